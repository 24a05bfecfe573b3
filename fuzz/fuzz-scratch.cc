#include "fuzz-scratch.h"

#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
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
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/ns3-uml-fuzz-XXXXXX";
        if (!mkdtemp(tmpl.data()))
        {
            std::perror("mkdtemp");
            std::abort();
        }
        g_dir = tmpl;
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
