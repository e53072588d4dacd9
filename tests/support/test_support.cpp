#include "test_support.h"

#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>
#include <unistd.h>

namespace kvlens::test {

int run(const std::string & cmd, std::string * out) {
    std::string full = cmd + " 2>&1";
    FILE * p = popen(full.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    size_t n;
    std::string s;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    int st = pclose(p);
    if (out) *out = s;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/kvlens-test-XXXXXX";
    path = mkdtemp(tmpl);
}

TempDir::~TempDir() {
    std::string cmd = "rm -rf '" + path + "'";
    std::system(cmd.c_str());
}

}  // namespace kvlens::test
