#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

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

std::string slurp(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

int free_port() {
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    bind(s, (sockaddr *) &a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(s, (sockaddr *) &a, &len);
    close(s);
    return ntohs(a.sin_port);
}

void expect_one_clear_error(int rc, const std::string & out, const std::string & needle, bool exit_1) {
    if (exit_1) EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(rc, 0) << out;
    EXPECT_LT(rc, 128) << "crashed / aborted: " << out;
    std::string line = out;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    EXPECT_EQ(line.find('\n'), std::string::npos) << "more than one line:\n" << out;
    EXPECT_EQ(line.rfind("kvlens: error: ", 0), 0u) << out;
    EXPECT_NE(line.find(needle), std::string::npos) << "expected '" << needle << "' in: " << out;
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
