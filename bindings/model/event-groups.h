// Independent groups: nodes that no chain of channels joins cannot reach each other.
#ifndef NS3_UML_EVENT_GROUPS_H
#define NS3_UML_EVENT_GROUPS_H

#include <cstdint>
#include <limits>
#include <set>
#include <utility>
#include <vector>

namespace ns3
{

/**
 * The nodes of ns-3's NodeList split into groups: two nodes share a group when a chain of
 * channels joins them. An event with a node's context belongs to that node's group; an
 * event without one (a stop, a Python callback) is global and can reach every group. Nothing
 * in one group can reach another, so a guest needs to stop only for its own group's events
 * and the global ones (docs/DESIGN.md rule 2), and each group keeps its own clock: the
 * latest time any of its actors reached.
 *
 * It indexes the pending events by group. With one group (or none) it is inactive and
 * costs nothing: every question then has the event list's plain answer.
 */
class UmlEventGroups
{
  public:
    /** The group of events without a node: they can reach everything. */
    static constexpr uint32_t GLOBAL = std::numeric_limits<uint32_t>::max();

    /** Group the nodes of ns-3's NodeList as they are now. True when the groups changed:
     * the index is then empty, and the caller must Add every pending event anew. */
    bool Compute();
    /** Forget every group (grouping off): inactive, GetNGroups() is 0. */
    void Clear();
    /** More than one group: the index and the clocks are kept. */
    bool IsActive() const;
    uint32_t GetNGroups() const;

    /** The group of an event with this context (GLOBAL: no node, none we know, or no
     * grouping: inactive, every context is GLOBAL). */
    uint32_t GroupOf(uint32_t context) const;
    /** Whether an event with this context can reach an actor of group g. */
    bool Reaches(uint32_t context, uint32_t group) const;

    void Add(uint64_t ts, uint32_t uid, uint32_t context);
    void Remove(uint64_t ts, uint32_t uid, uint32_t context);
    /** The earliest pending event that can reach group g (its own or a global one), in time
     * steps; UINT64_MAX when there is none. */
    uint64_t NextTs(uint32_t group) const;
    /** The earliest global event, in time steps (UINT64_MAX: none). */
    uint64_t NextGlobalTs() const;
    /** Whether (ts, uid) is the first pending event of group g. */
    bool IsFirst(uint64_t ts, uint32_t uid, uint32_t group) const;

    /** The latest time (time steps) an actor of this context's group reached; 0 for GLOBAL. */
    uint64_t GetClock(uint32_t context) const;
    /** An actor of this context's group reached ts. */
    void Advance(uint32_t context, uint64_t ts);

  private:
    using Index = std::set<std::pair<uint64_t, uint32_t>>; // (time step, uid)

    Index& IndexOf(uint32_t context);

    std::vector<uint32_t> m_groupOfNode;
    std::vector<Index> m_pending; // by group; the last one holds the global events
    std::vector<uint64_t> m_clock; // by group
    uint32_t m_nGroups = 0;
};

} // namespace ns3

#endif
