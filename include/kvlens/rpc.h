// Layers on other hosts: llama.cpp's RPC backend (`--rpc HOST:PORT[,HOST:PORT…]`, llama.cpp's flag and meaning).
// Each endpoint is a ggml-rpc-server process (built from the pinned tree: build/bin/ggml-rpc-server). Registered
// servers become ggml devices; llama.cpp then places the offloaded layers (-ngl) on them as it places GPU layers
// (split by free memory, or by -ts). The tap reads K/V through the backend API, so it works unchanged: an RPC
// layer's rows cross the network once, in a GET_TENSOR reply (docs/SCALING.md "RPC").
#pragma once
#include <string>
#include <vector>

namespace kvlens {

struct RpcEndpoint {
    std::string host;
    int port = 0;
    std::string text() const { return host + ":" + std::to_string(port); }
};

// Parses "HOST:PORT[,HOST:PORT…]" (port 1..65535, no duplicates, at most 16); kvlens::Error on a bad list.
std::vector<RpcEndpoint> parse_rpc_servers(const std::string & list);

// Checks one server before ggml sees it (ggml-rpc aborts the process on a refused connection): TCP connect and
// the RPC HELLO within timeout_ms, protocol major version equal to the pinned tree's. kvlens::Error otherwise
// (unreachable, busy with another client, not an RPC server, other version).
void probe_rpc_server(const RpcEndpoint & e, int timeout_ms = 5000);

// Probes every endpoint, then registers each as a ggml device (once per process and endpoint). From then on a
// server lost mid-run (killed, network gone) ends the process with one `kvlens: error:` line and exit 1 instead of
// ggml's abort and backtrace.
void add_rpc_servers(const std::vector<RpcEndpoint> & endpoints);

// The registered ggml devices, one line each: name, description, memory (for `kvlens info`).
std::vector<std::string> device_lines();

}  // namespace kvlens
