// Wire format of the UM time-travel protocol (include/uapi/linux/um_timetravel.h, Linux 6.12).
// The one place the C++ core takes these values from; ns3_uml/protocol.py mirrors them and a
// test checks that both agree.
#ifndef NS3_UML_TT_PROTOCOL_H
#define NS3_UML_TT_PROTOCOL_H

#include <cstddef>
#include <cstdint>

namespace ns3
{
namespace tt
{

enum Op : uint32_t
{
    OP_ACK = 0,
    OP_START = 1,
    OP_REQUEST = 2,
    OP_WAIT = 3,
    OP_GET = 4,
    OP_UPDATE = 5,
    OP_RUN = 6,
    OP_FREE_UNTIL = 7,
    OP_GET_TOD = 8,
    OP_BROADCAST = 9,
    OP_COUNT = 10
};

struct Message
{
    uint32_t op;
    uint32_t seq;
    uint64_t time;
};

static_assert(sizeof(Message) == 16, "um_timetravel_msg is 16 bytes");

constexpr uint64_t START_ACK_ID_MASK = 0xffff;
// The START id of a client given none: UML's time-travel=ext:PATH sends (u64)-1, as
// wmediumd always does.
constexpr uint64_t ID_NONE = ~uint64_t{0};
constexpr int MAX_FDS = 2; // [0] memfd, [1] log fd

constexpr uint32_t SHM_VERSION = 2;
constexpr size_t SHM_HEADER_SIZE = 4096;
constexpr size_t SHM_CLIENT_SIZE = 128;
constexpr uint32_t CAP_TIME_SHARE = 0x1;
constexpr uint32_t FLAG_REQ_RUN = 0x1;

struct ShmHeader
{
    uint32_t version;
    uint32_t len;
    uint64_t free_until;
    uint64_t current_time;
    uint16_t running_id;
    uint16_t max_clients;
};

struct ShmClient
{
    uint32_t capa;
    uint32_t flags;
    uint64_t req_time;
    uint64_t name;
};

static_assert(offsetof(ShmHeader, free_until) == 8);
static_assert(offsetof(ShmHeader, current_time) == 16);
static_assert(offsetof(ShmHeader, running_id) == 24);
static_assert(offsetof(ShmHeader, max_clients) == 26);
static_assert(offsetof(ShmClient, req_time) == 8);
static_assert(offsetof(ShmClient, name) == 16);

// UML avoids wrap-around by never asking for more than S64_MAX.
constexpr uint64_t TIME_NEVER = 0x7fffffffffffffffULL;

inline const char*
OpName(uint32_t op)
{
    static const char* const names[OP_COUNT] = {"ACK",
                                                "START",
                                                "REQUEST",
                                                "WAIT",
                                                "GET",
                                                "UPDATE",
                                                "RUN",
                                                "FREE_UNTIL",
                                                "GET_TOD",
                                                "BROADCAST"};
    return op < OP_COUNT ? names[op] : "UNKNOWN";
}

} // namespace tt
} // namespace ns3

#endif
