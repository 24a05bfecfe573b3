#include "event-groups.h"

#include "ns3/channel.h"
#include "ns3/log.h"
#include "ns3/net-device.h"
#include "ns3/node-list.h"
#include "ns3/node.h"

#include <numeric>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlEventGroups");

namespace
{

uint32_t
Root(std::vector<uint32_t>& parent, uint32_t n)
{
    while (parent[n] != n)
    {
        parent[n] = parent[parent[n]];
        n = parent[n];
    }
    return n;
}

} // namespace

bool
UmlEventGroups::Compute()
{
    uint32_t nodes = NodeList::GetNNodes();
    std::vector<uint32_t> parent(nodes);
    std::iota(parent.begin(), parent.end(), 0);
    for (uint32_t i = 0; i < nodes; i++)
    {
        Ptr<Node> node = NodeList::GetNode(i);
        for (uint32_t d = 0; d < node->GetNDevices(); d++)
        {
            Ptr<Channel> channel = node->GetDevice(d)->GetChannel();
            if (!channel)
            {
                continue;
            }
            for (std::size_t k = 0; k < channel->GetNDevices(); k++)
            {
                Ptr<NetDevice> peer = channel->GetDevice(k);
                if (!peer || !peer->GetNode())
                {
                    continue;
                }
                uint32_t a = Root(parent, i);
                uint32_t b = Root(parent, peer->GetNode()->GetId());
                // The smaller id is the root, so group numbers follow node order.
                parent[std::max(a, b)] = std::min(a, b);
            }
        }
    }
    std::vector<uint32_t> groupOfNode(nodes);
    std::vector<uint32_t> numberOfRoot(nodes, GLOBAL);
    uint32_t groups = 0;
    for (uint32_t i = 0; i < nodes; i++)
    {
        uint32_t r = Root(parent, i);
        if (numberOfRoot[r] == GLOBAL)
        {
            numberOfRoot[r] = groups++;
        }
        groupOfNode[i] = numberOfRoot[r];
    }
    if (groups <= 1)
    {
        groupOfNode.clear(); // one group: nothing to index
    }
    if (groupOfNode == m_groupOfNode && groups == m_nGroups)
    {
        return false;
    }
    NS_LOG_INFO(nodes << " nodes in " << groups << " independent groups");
    m_groupOfNode = std::move(groupOfNode);
    m_nGroups = groups;
    m_pending.assign(IsActive() ? groups + 1 : 0, Index{});
    m_clock.assign(groups, 0);
    return true;
}

void
UmlEventGroups::Clear()
{
    m_groupOfNode.clear();
    m_pending.clear();
    m_clock.clear();
    m_nGroups = 0;
}

bool
UmlEventGroups::IsActive() const
{
    return m_nGroups > 1;
}

uint32_t
UmlEventGroups::GetNGroups() const
{
    return m_nGroups;
}

uint32_t
UmlEventGroups::GroupOf(uint32_t context) const
{
    return context < m_groupOfNode.size() ? m_groupOfNode[context] : GLOBAL;
}

bool
UmlEventGroups::Reaches(uint32_t context, uint32_t group) const
{
    uint32_t g = GroupOf(context);
    return g == GLOBAL || group == GLOBAL || g == group;
}

UmlEventGroups::Index&
UmlEventGroups::IndexOf(uint32_t context)
{
    uint32_t g = GroupOf(context);
    return m_pending[g == GLOBAL ? m_nGroups : g];
}

void
UmlEventGroups::Add(uint64_t ts, uint32_t uid, uint32_t context)
{
    if (IsActive())
    {
        IndexOf(context).emplace(ts, uid);
    }
}

void
UmlEventGroups::Remove(uint64_t ts, uint32_t uid, uint32_t context)
{
    if (IsActive())
    {
        IndexOf(context).erase({ts, uid});
    }
}

uint64_t
UmlEventGroups::NextTs(uint32_t group) const
{
    uint64_t next = NextGlobalTs();
    if (group != GLOBAL && !m_pending[group].empty())
    {
        next = std::min(next, m_pending[group].begin()->first);
    }
    return next;
}

uint64_t
UmlEventGroups::NextGlobalTs() const
{
    const Index& global = m_pending[m_nGroups];
    return global.empty() ? UINT64_MAX : global.begin()->first;
}

bool
UmlEventGroups::IsFirst(uint64_t ts, uint32_t uid, uint32_t group) const
{
    const Index& own = m_pending[group];
    return !own.empty() && *own.begin() == std::make_pair(ts, uid);
}

uint64_t
UmlEventGroups::GetClock(uint32_t context) const
{
    uint32_t g = GroupOf(context);
    return g != GLOBAL ? m_clock[g] : 0;
}

void
UmlEventGroups::Advance(uint32_t context, uint64_t ts)
{
    uint32_t g = GroupOf(context);
    if (g != GLOBAL && ts > m_clock[g])
    {
        m_clock[g] = ts;
    }
}

} // namespace ns3
