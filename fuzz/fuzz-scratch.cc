#include "fuzz-scratch.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace ns3
{
namespace fuzz
{

namespace
{
std::string g_dir;

void
RemoveDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(g_dir, ignored);
}
} // namespace

const std::string&
ScratchDir()
{
    if (g_dir.empty())
    {
        const char* tmp = std::getenv("TMPDIR");
        const std::filesystem::path base(tmp && *tmp ? tmp : "/tmp");
        const std::string prefix = "ns3-uml-fuzz-";
        // A finding ends the process without exit handlers: the directories of targets
        // that are gone are removed by the next one.
        std::error_code ignored;
        for (const auto& entry : std::filesystem::directory_iterator(base, ignored))
        {
            std::string name = entry.path().filename().string();
            if (name.rfind(prefix, 0) == 0)
            {
                pid_t pid = std::atoi(name.c_str() + prefix.size());
                if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
                {
                    std::filesystem::remove_all(entry.path(), ignored);
                }
            }
        }
        g_dir = (base / (prefix + std::to_string(getpid()))).string();
        std::filesystem::remove_all(g_dir, ignored);
        if (mkdir(g_dir.c_str(), 0700) != 0)
        {
            std::perror(g_dir.c_str());
            std::abort();
        }
        std::atexit(RemoveDir);
    }
    return g_dir;
}

int
OpenFds()
{
    DIR* d = opendir("/proc/self/fd");
    int n = 0;
    while (readdir(d))
    {
        n++;
    }
    closedir(d);
    return n;
}

void
CheckNoFdLeak(int before, const char* what)
{
    int after = OpenFds();
    if (after != before)
    {
        Finding(std::string(what) + " left " + std::to_string(after - before) +
                " descriptors open");
    }
}

void
Finding(const std::string& what)
{
    std::fprintf(stderr, "==ns3-uml-fuzz== FINDING: %s\n", what.c_str());
    std::abort();
}

} // namespace fuzz
} // namespace ns3
