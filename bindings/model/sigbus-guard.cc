#include "sigbus-guard.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>
#include <sys/mman.h>

namespace ns3
{

namespace
{

/** A seqlock: `seq` is odd while [base, base + len) is watched; the handler reads base and
 * len, then seq again, and ignores the slot if it changed meanwhile (a slot being reused by
 * another thread). */
struct Slot
{
    std::atomic<bool> taken{false};
    std::atomic<uint32_t> seq{0};
    std::atomic<uintptr_t> base{0};
    std::atomic<uintptr_t> len{0};
    std::atomic<uintptr_t> fault{0};
};

static_assert(std::atomic<uintptr_t>::is_always_lock_free &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

Slot g_slots[SigbusGuard::MAX_WATCHED];
struct sigaction g_previous; // written once, before the handler is installed
std::once_flag g_installOnce;

/** What would have happened without us: the previous handler, or death by SIGBUS. */
void
Chain(int sig, siginfo_t* info, void* context)
{
    if (g_previous.sa_flags & SA_SIGINFO)
    {
        g_previous.sa_sigaction(sig, info, context);
        return;
    }
    if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN)
    {
        g_previous.sa_handler(sig);
        return;
    }
    const bool sent = info->si_code <= 0; // kill() or raise(), not a fault
    if (g_previous.sa_handler == SIG_IGN && sent)
    {
        return;
    }
    // A fault happens again when the handler returns, a sent signal is sent again: either
    // way it now meets the default action (the kernel forces it for an ignored fault too).
    signal(sig, SIG_DFL);
    if (sent)
    {
        raise(sig);
    }
}

void
OnSigbus(int sig, siginfo_t* info, void* context)
{
    const int savedErrno = errno;
    const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
    if (info->si_code > 0) // raised by the kernel for an access at si_addr
    {
        for (Slot& s : g_slots)
        {
            const uint32_t seq = s.seq.load(std::memory_order_acquire);
            if (!(seq & 1))
            {
                continue;
            }
            const uintptr_t base = s.base.load(std::memory_order_relaxed);
            const uintptr_t len = s.len.load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            if (s.seq.load(std::memory_order_relaxed) != seq || addr - base >= len)
            {
                continue;
            }
            uintptr_t none = 0;
            s.fault.compare_exchange_strong(none, addr, std::memory_order_relaxed);
            // Zeros over all of it: the access completes, and nothing of this mapping is
            // trusted any more (its owner fails the guest). mmap is a plain system call.
            void* p = mmap(reinterpret_cast<void*>(base),
                           len,
                           PROT_READ | PROT_WRITE,
                           MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
                           -1,
                           0);
            errno = savedErrno;
            if (p != MAP_FAILED)
            {
                return;
            }
            break; // not repaired: crash as before
        }
    }
    errno = savedErrno;
    Chain(sig, info, context);
}

void
Install()
{
    sigaction(SIGBUS, nullptr, &g_previous);
    struct sigaction action{};
    action.sa_sigaction = OnSigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, nullptr);
}

} // namespace

int
SigbusGuard::Watch(void* base, size_t len)
{
    std::call_once(g_installOnce, Install);
    for (int i = 0; i < MAX_WATCHED; ++i)
    {
        Slot& s = g_slots[i];
        bool free = false;
        if (!s.taken.compare_exchange_strong(free, true, std::memory_order_acq_rel))
        {
            continue;
        }
        // seq is even here: the handler skips the slot while it is filled.
        std::atomic_thread_fence(std::memory_order_release);
        s.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
        s.len.store(len, std::memory_order_relaxed);
        s.fault.store(0, std::memory_order_relaxed);
        s.seq.fetch_add(1, std::memory_order_release);
        return i;
    }
    return -1;
}

void
SigbusGuard::Unwatch(int slot)
{
    Slot& s = g_slots[slot];
    s.seq.fetch_add(1, std::memory_order_release);
    s.taken.store(false, std::memory_order_release);
}

uintptr_t
SigbusGuard::FaultAddress(int slot)
{
    // The handler ran on this thread inside one of the accesses before: the compiler must
    // not move this load before them.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return g_slots[slot].fault.load(std::memory_order_relaxed);
}

} // namespace ns3
