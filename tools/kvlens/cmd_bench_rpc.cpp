// kvlens bench rpc: decode (and prefill) tokens/s with the layers on llama.cpp RPC servers, tap off / K/V of the
// last 4 layers / K/V of all layers, as ratios to RPC with the tap off, and the same model all-local as the
// reference for what RPC itself costs — one process, interleaved runs. Without --rpc it starts --servers
// ggml-rpc-server processes of the pinned tree on 127.0.0.1 (the loopback: the protocol's round trips without a
// network's latency; pass --rpc to measure a real one).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"
#include "kvlens/rpc.h"

using namespace kvlens;
using kvlens::cli::median;

namespace {


// ggml-rpc-server children on 127.0.0.1, stopped when this goes away (and killed if the bench dies).
struct LocalServers {
    std::vector<pid_t> pids;
    std::vector<std::string> endpoints;
    LocalServers(int n, int threads, bool verbose) {
        for (int i = 0; i < n; ++i) {
            const int port = cli::free_port();
            pid_t p = fork();
            if (p == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (!verbose) {  // the server's own log ("Accepted client connection", ...) only with -v
                    const int null = open("/dev/null", O_WRONLY);
                    if (null >= 0) dup2(null, 1), dup2(null, 2);
                }
                const std::string t = std::to_string(threads), pt = std::to_string(port);
                execl(KVLENS_RPC_SERVER, KVLENS_RPC_SERVER, "-H", "127.0.0.1", "-p", pt.c_str(), "-t", t.c_str(), (char *) nullptr);
                _exit(127);
            }
            if (p < 0) throw Error("bench rpc: cannot start " + std::string(KVLENS_RPC_SERVER));
            pids.push_back(p);
            const RpcEndpoint e{"127.0.0.1", port};
            for (int k = 0;; ++k) {  // ready when it answers the handshake
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                int st = 0;
                if (waitpid(p, &st, WNOHANG) == p) {
                    pids.pop_back();
                    throw Error("bench rpc: " + std::string(KVLENS_RPC_SERVER) + " exited at start (is it built? make build)");
                }
                try {
                    probe_rpc_server(e, 2000);
                    break;
                } catch (const Error & err) {
                    if (k > 100) throw Error(std::string("bench rpc: the local server did not come up: ") + err.what());
                }
            }
            endpoints.push_back(e.text());
        }
    }
    ~LocalServers() {
        for (pid_t p : pids) kill(p, SIGTERM);
        for (pid_t p : pids) waitpid(p, nullptr, 0);
    }
    std::string list() const {
        std::string s;
        for (auto & e : endpoints) s += (s.empty() ? "" : ",") + e;
        return s;
    }
};

}  // namespace

static int bench_rpc(int argc, char ** argv) {
    CLI::App app{"decode tokens/s with layers on llama.cpp RPC servers: tap off / last 4 / all layers, as ratios",
                 "kvlens bench rpc"};
    cli::CommonArgs a;
    std::string shape = "qwen3-0.6b", wtype = "q8_0", vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", json_out;
    int n_prompt = 64, n_decode = 32, reps = 3, n_servers = 2, server_threads = 1;
    app.add_option("-m,--model", a.model.path, "model GGUF (default: generate a random-weight one of --shape)");
    app.add_option("--shape", shape, "shape of the generated model (qwen3-0.6b, qwen3-8b, llama-3.1-8b, ...)");
    app.add_option("--wtype", wtype, "weight type of the generated model (f32, f16, q8_0)");
    app.add_option("--vocab", vocab, "vocabulary GGUF for the generated model");
    app.add_option("--cache-dir", cache_dir, "where generated models are kept");
    app.add_option("--rpc", a.model.rpc, "RPC servers HOST:PORT,... (default: start --servers local ggml-rpc-server)");
    app.add_option("--servers", n_servers, "without --rpc: how many local ggml-rpc-server processes to start (1..16)");
    app.add_option("--server-threads", server_threads, "without --rpc: threads of each local server");
    app.add_option("--ngl,--n-gpu-layers", a.model.n_gpu_layers, "layers on the RPC servers (-ngl; -1: all)");
    app.add_option("--ts,--tensor-split", a.tensor_split, "share of the layers per server, N0,N1,... (-ts)");
    app.add_option("--prompt-tokens", n_prompt, "prompt length");
    app.add_option("--decode", n_decode, "tokens decoded per run");
    app.add_option("--reps", reps, "interleaved repetitions (median reported)");
    app.add_option("--json", json_out, "also write the results as JSON");
    app.add_flag("-v,--verbose", a.verbose, "llama.cpp log");
    cli::add_session_flags(app, a);
    a.model.n_gpu_layers = -1;
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!json_out.empty()) check_writable(json_out);  // before the runs
    if (n_prompt < 1 || n_decode < 1 || reps < 1) throw Error("--prompt-tokens, --decode and --reps must be >= 1");
    if (n_servers < 1 || n_servers > 16) throw Error("--servers must be 1..16");
    if (server_threads < 1) throw Error("--server-threads must be >= 1");
    if (a.model.path.empty()) a.model.path = cached_shape_model(shape, wtype, vocab, cache_dir);
    validate_gguf(a.model.path);  // before any server starts

    std::unique_ptr<LocalServers> local_servers;
    if (a.model.rpc.empty()) {
        local_servers.reset(new LocalServers(n_servers, server_threads, a.verbose > 0));
        a.model.rpc = local_servers->list();
    }
    cli::CommonArgs local = a;
    local.model.rpc.clear(), local.model.n_gpu_layers = 0, local.tensor_split.clear();
    auto remote_model = cli::load_model(a);     // registers the servers, offloads -ngl layers to them
    auto local_model = cli::load_model(local);  // the same weights, every layer on this host
    const ModelFacts & f = remote_model->facts();
    if (a.session.n_ctx == 0) a.session.n_ctx = n_prompt + n_decode + 8;
    const std::vector<Token> prompt = cli::bench_prompt(*remote_model, n_prompt);

    std::vector<int> all, last4;
    for (int l = 0; l < f.n_layer; ++l) all.push_back(l);
    for (int l = std::max(0, f.n_layer - 4); l < f.n_layer; ++l) last4.push_back(l);
    std::vector<cli::TapRun> cfgs(4);
    cfgs[0].name = "local, tap off";
    cfgs[1].name = "RPC, tap off";
    cfgs[2].name = "RPC, K/V last 4 layers", cfgs[2].spec.layers = last4;
    cfgs[3].name = "RPC, K/V all layers", cfgs[3].spec.layers = all;
    std::vector<std::unique_ptr<Session>> sessions;
    cli::SumConsumer sink;
    for (size_t i = 0; i < cfgs.size(); ++i) {
        sessions.emplace_back(new Session(i == 0 ? local_model : remote_model, a.session));
        sessions.back()->set_tap(cfgs[i].spec);
        sessions.back()->subscribe(&sink);
        cfgs[i].session = sessions.back().get();
    }
    const int n_remote = a.model.n_gpu_layers < 0 ? f.n_layer : std::min(a.model.n_gpu_layers, f.n_layer);
    std::fprintf(stderr, "bench rpc: %s (%s, %d layers, %d on %s), %d prompt + %d decode tokens, %d reps x %zu configs\n",
                 a.model.path.c_str(), f.arch.c_str(), f.n_layer, n_remote, a.model.rpc.c_str(), n_prompt, n_decode, reps,
                 cfgs.size());
    cli::run_interleaved(cfgs, prompt, n_decode, reps);

    // what the tap moves per decoded token: one K and one V row (f32, as computed) per tapped layer, each read
    // with its own GET_TENSOR call when the layer lives on a server
    auto tap_bytes = [&](const cli::TapRun & c) { return 2.0 * c.spec.layers.size() * f.kv_row() * 4; };
    const double d1 = median(cfgs[1].decode_tps), p1 = median(cfgs[1].prefill_tps);
    std::printf("| config | prefill tok/s | ratio | decode tok/s | ratio to RPC tap off | tap reads/token | tap bytes/token |\n"
                "|---|---|---|---|---|---|---|\n");
    nlohmann::ordered_json rows = nlohmann::json::array();
    for (auto & c : cfgs) {
        const double p = median(c.prefill_tps), d = median(c.decode_tps);
        std::printf("| %s | %.1f | %.3f | %.2f | %.3f | %zu | %.0f |\n", c.name.c_str(), p, p / p1, d, d / d1,
                    2 * c.spec.layers.size(), tap_bytes(c));
        rows.push_back({{"config", c.name}, {"prefill_tps", p}, {"prefill_ratio", p / p1}, {"decode_tps", d},
                        {"decode_ratio", d / d1}, {"tap_reads_per_token", 2 * c.spec.layers.size()},
                        {"tap_bytes_per_token", tap_bytes(c)}});
    }
    if (!json_out.empty())
        write_text_atomic(json_out, nlohmann::ordered_json{{"model", a.model.path}, {"arch", f.arch}, {"n_layer", f.n_layer},
                                                           {"layers_on_rpc", n_remote}, {"rpc", a.model.rpc},
                                                           {"local_servers", (bool) local_servers},
                                                           {"n_prompt", n_prompt}, {"n_decode", n_decode}, {"reps", reps},
                                                           {"rows", rows}}.dump(1) + "\n");
    return 0;
}

KVLENS_BENCH("rpc", "decode tokens/s with layers on RPC servers: tap off / last 4 / all layers, as ratios", bench_rpc);
