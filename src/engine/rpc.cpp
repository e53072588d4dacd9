// --rpc: probe llama.cpp rpc-server endpoints, register them as ggml devices, and turn a lost server into one
// clear error line.
#include "kvlens/rpc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "ggml.h"
#include "kvlens/error.h"

namespace kvlens {

std::vector<RpcEndpoint> parse_rpc_servers(const std::string & list) {
    std::vector<RpcEndpoint> out;
    std::set<std::string> seen;
    if (list.empty()) throw Error("--rpc: no servers given (HOST:PORT[,HOST:PORT...])");
    size_t start = 0;
    while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(start, end - start);
        const size_t colon = item.rfind(':');
        if (item.empty() || colon == std::string::npos || colon == 0 || colon + 1 == item.size())
            throw Error("--rpc: '" + item + "' is not HOST:PORT");
        RpcEndpoint e;
        e.host = item.substr(0, colon);
        const std::string port = item.substr(colon + 1);
        if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
            throw Error("--rpc: bad port in '" + item + "' (1..65535)");
        e.port = std::stoi(port);
        if (e.port < 1 || e.port > 65535) throw Error("--rpc: bad port in '" + item + "' (1..65535)");
        if (e.host.find(':') != std::string::npos || e.host.find_first_of(" \t") != std::string::npos)
            throw Error("--rpc: bad host in '" + item + "' (an IPv4 address or a host name)");
        if (!seen.insert(e.text()).second) throw Error("--rpc: " + e.text() + " is listed twice");
        out.push_back(e);
        start = end + 1;
    }
    if (out.size() > GGML_RPC_MAX_SERVERS)
        throw Error("--rpc: " + std::to_string(out.size()) + " servers, llama.cpp takes at most " +
                    std::to_string(GGML_RPC_MAX_SERVERS));
    return out;
}

namespace {

struct Fd {
    int fd = -1;
    ~Fd() { if (fd >= 0) ::close(fd); }
};

// Waits until fd is readable/writable or the deadline passes.
bool wait_fd(int fd, short events, int timeout_ms) {
    pollfd p{fd, events, 0};
    for (;;) {
        int r = ::poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        return r > 0;
    }
}

bool send_all(int fd, const void * buf, size_t n, int timeout_ms) {
    const char * p = (const char *) buf;
    while (n > 0) {
        if (!wait_fd(fd, POLLOUT, timeout_ms)) return false;
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w <= 0) return false;
        p += w, n -= (size_t) w;
    }
    return true;
}

// 1: ok, 0: timed out, -1: closed / error
int recv_all(int fd, void * buf, size_t n, int timeout_ms) {
    char * p = (char *) buf;
    while (n > 0) {
        if (!wait_fd(fd, POLLIN, timeout_ms)) return 0;
        ssize_t r = ::recv(fd, p, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return -1;
        p += r, n -= (size_t) r;
    }
    return 1;
}

std::vector<RpcEndpoint> g_endpoints;  // registered, for the lost-server message
std::mutex g_mu;

std::string endpoint_list() {
    std::string s;
    for (auto & e : g_endpoints) s += (s.empty() ? "" : ",") + e.text();
    return s;
}

// ggml_abort's hook once RPC servers are in use: one line and exit 1 (ggml would abort with a backtrace).
void on_ggml_abort(const char * message) {
    std::string m = message ? message : "";
    const size_t nl = m.find('\n');
    if (nl != std::string::npos) m.resize(nl);
    // drop ggml's "file:line: " prefix
    const size_t sp = m.find(": ");
    if (sp != std::string::npos && m.find(".c") < sp) m = m.substr(sp + 2);
    std::fflush(stdout);
    if (m.find("RPC") != std::string::npos || m.find("rpc") != std::string::npos)
        std::fprintf(stderr, "kvlens: error: lost an RPC server (%s): %s; check the ggml-rpc-server processes\n",
                     endpoint_list().c_str(), m.c_str());
    else
        std::fprintf(stderr, "kvlens: error: llama.cpp stopped: %s\n", m.c_str());
    std::fflush(stderr);
    _exit(1);
}

}  // namespace

void probe_rpc_server(const RpcEndpoint & e, int timeout_ms) {
    const std::string who = "--rpc " + e.text();
    addrinfo hints{}, * res = nullptr;
    hints.ai_family = AF_INET;  // ggml-rpc connects over IPv4 (gethostbyname)
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(e.host.c_str(), std::to_string(e.port).c_str(), &hints, &res) != 0 || !res)
        throw Error(who + ": cannot resolve host '" + e.host + "'");
    Fd s;
    s.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (s.fd < 0) { freeaddrinfo(res); throw Error(who + ": cannot create a socket"); }
    ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    int r = ::connect(s.fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (r < 0 && errno != EINPROGRESS) throw Error(who + ": cannot connect (" + std::strerror(errno) + "); is ggml-rpc-server running there?");
    if (r < 0) {
        if (!wait_fd(s.fd, POLLOUT, timeout_ms)) throw Error(who + ": no answer within " + std::to_string(timeout_ms / 1000) + " s");
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) throw Error(who + ": cannot connect (" + std::strerror(err) + "); is ggml-rpc-server running there?");
    }
    // RPC request: | cmd (1 byte) | size (8 bytes) | data |; HELLO carries 24 bytes of connection caps (none here).
    uint8_t req[1 + 8 + 24] = {0};
    req[0] = 14;  // RPC_CMD_HELLO (fixed by the protocol)
    const uint64_t size = 24;
    std::memcpy(req + 1, &size, 8);
    if (!send_all(s.fd, req, sizeof req, timeout_ms)) throw Error(who + ": the connection failed during the RPC handshake");
    uint64_t rsize = 0;
    int got = recv_all(s.fd, &rsize, 8, timeout_ms);
    if (got == 0)
        throw Error(who + ": no RPC handshake within " + std::to_string(timeout_ms / 1000) +
                    " s (the server serves one client at a time: is another process using it?)");
    if (got < 0 || rsize < 3 || rsize > 1024) throw Error(who + ": not a ggml-rpc-server (bad handshake)");
    std::vector<uint8_t> rsp(rsize);
    if (recv_all(s.fd, rsp.data(), rsize, timeout_ms) != 1) throw Error(who + ": not a ggml-rpc-server (bad handshake)");
    if (rsp[0] != RPC_PROTO_MAJOR_VERSION)
        throw Error(who + ": RPC protocol " + std::to_string(rsp[0]) + "." + std::to_string(rsp[1]) + "." +
                    std::to_string(rsp[2]) + ", kvlens speaks " + std::to_string(RPC_PROTO_MAJOR_VERSION) + ".x: " +
                    "run a ggml-rpc-server built from the same llama.cpp release");
}

void add_rpc_servers(const std::vector<RpcEndpoint> & endpoints) {
    std::lock_guard<std::mutex> lock(g_mu);
    for (auto & e : endpoints) {
        bool known = false;
        for (auto & k : g_endpoints) known = known || k.text() == e.text();
        if (known) continue;
        probe_rpc_server(e);
        ggml_set_abort_callback(on_ggml_abort);
        // ggml-rpc sends without MSG_NOSIGNAL: a server gone would end the process by SIGPIPE, without a word;
        // ignored, the failed send reaches on_ggml_abort
        std::signal(SIGPIPE, SIG_IGN);
        g_endpoints.push_back(e);
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(e.text().c_str());
        if (!reg) throw Error("--rpc " + e.text() + ": llama.cpp could not add the server");
        ggml_backend_register(reg);
    }
}

std::vector<std::string> device_lines() {
    std::vector<std::string> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        size_t free = 0, total = 0;
        ggml_backend_dev_memory(d, &free, &total);
        char buf[512];
        std::snprintf(buf, sizeof buf, "%s: %s (%zu MiB, %zu MiB free)", ggml_backend_dev_name(d),
                      ggml_backend_dev_description(d), total >> 20, free >> 20);
        out.push_back(buf);
    }
    return out;
}

}  // namespace kvlens
