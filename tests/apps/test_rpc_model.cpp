// Layers on other hosts (issue 17): llama.cpp's RPC backend under kvlens's tap. Two ggml-rpc-server processes of
// the pinned tree on 127.0.0.1; `kv-dump`, `coe` and `think` with layers offloaded to them give the rows (≤ 1e-5,
// f32 cache) and the records of a local run, on a random Qwen3-shaped model and on the embedded reasoner. A server
// killed mid-run ends the run with one `kvlens: error:` line (no hang, no torn record); bad endpoints are refused
// before ggml sees them (ggml-rpc would abort the process).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "kvlens/npy.h"
#include "kvlens/random_model.h"
#include "kvlens/rpc.h"
#include "test_support.h"

namespace kvlens {
namespace {

using json = nlohmann::ordered_json;

std::string reasoner() { return test::source_dir() + "/models/kvlens-reasoner.gguf"; }
std::string classifier() { return test::source_dir() + "/models/kvlens-reasoner.classifier.gguf"; }

struct Outcome {
    int rc;
    std::string out;
};

Outcome cli(const std::string & args) {
    Outcome o;
    o.rc = test::run(test::kvlens_bin() + " " + args + " </dev/null", &o.out);
    return o;
}

using kvlens::test::slurp;

// A port nothing listens on now (bound, then closed).
using kvlens::test::free_port;

// One ggml-rpc-server (1 thread, CPU device) on 127.0.0.1, stopped at destruction; dies with the test.
struct RpcServer {
    pid_t pid = -1;
    int port = 0;
    std::string log;
    explicit RpcServer(const std::string & dir) {
        for (int attempt = 0; attempt < 5 && pid < 0; ++attempt) {
            port = free_port();
            log = dir + "/rpc-" + std::to_string(port) + ".log";
            pid_t p = fork();
            if (p == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                const std::string cmd = std::string("exec ") + KVLENS_RPC_SERVER + " -H 127.0.0.1 -p " +
                                        std::to_string(port) + " -t 1 >" + log + " 2>&1";
                execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *) nullptr);
                _exit(127);
            }
            // ready when it answers the RPC handshake (probe_rpc_server connects, says HELLO, hangs up)
            for (int i = 0; i < 100; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                int st = 0;
                if (waitpid(p, &st, WNOHANG) == p) break;  // exited (port taken?): try another port
                try {
                    probe_rpc_server({"127.0.0.1", port}, 2000);
                    pid = p;
                    break;
                } catch (const std::exception &) {
                }
            }
            if (pid < 0) kill(p, SIGKILL), waitpid(p, nullptr, 0);
        }
    }
    std::string endpoint() const { return "127.0.0.1:" + std::to_string(port); }
    void kill_now() {
        if (pid > 0) kill(pid, SIGKILL), waitpid(pid, nullptr, 0), pid = -1;
    }
    ~RpcServer() { kill_now(); }
};

struct TwoServers {
    RpcServer a, b;
    explicit TwoServers(const std::string & dir) : a(dir), b(dir) {}
    bool up() const { return a.pid > 0 && b.pid > 0; }
    std::string rpc() const { return "--rpc " + a.endpoint() + "," + b.endpoint(); }
};

#define REQUIRE_SERVERS(s) ASSERT_TRUE((s).up()) << "could not start " << KVLENS_RPC_SERVER << ": " << slurp((s).a.log)

// The random Qwen3: 4 layers on the Qwen2 vocabulary with Qwen3's real template and its think tokens.
std::string qwen3_model(const std::string & dir) {
    RandomModelSpec s;
    s.vocab_gguf = test::llama_dir() + "/models/ggml-vocab-qwen2.gguf";
    s.n_ctx = 512;
    s.chat_template = slurp(test::llama_dir() + "/models/templates/Qwen-Qwen3-0.6B.jinja");
    s.add_tokens = {{"<think>", 4}, {"</think>", 4}};
    const std::string p = dir + "/qwen3.gguf";
    write_random_model(s, p);
    return p;
}

double max_abs_diff(const std::string & a, const std::string & b) {
    std::vector<size_t> sa, sb;
    auto x = read_npy(a, sa), y = read_npy(b, sb);
    if (sa != sb) return INFINITY;
    double m = 0;
    for (size_t i = 0; i < x.size(); ++i) m = std::max(m, (double) std::fabs(x[i] - y[i]));
    return m;
}

// Two records agree: same keys, strings, booleans and integers; floats within 1e-4 (relative above 1): they come
// from rows that agree to 1e-5. The wall-clock "seconds" is left out.
bool same_record(const json & a, const json & b, std::string & where) {
    if (a.is_object() && b.is_object()) {
        if (a.size() != b.size()) return where = "keys", false;
        for (auto & [k, v] : a.items()) {
            if (k == "seconds") continue;
            if (!b.contains(k) || !same_record(v, b[k], where)) return where = k + (where.empty() ? "" : "." + where), false;
        }
        return true;
    }
    if (a.is_array() && b.is_array()) {
        if (a.size() != b.size()) return where = "size", false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!same_record(a[i], b[i], where)) return where = std::to_string(i) + (where.empty() ? "" : "." + where), false;
        return true;
    }
    if (a.is_number_float() || b.is_number_float()) {
        if (!a.is_number() || !b.is_number()) return false;
        const double x = a.get<double>(), y = b.get<double>();
        return std::fabs(x - y) <= 1e-4 * std::max(1.0, std::fabs(x));
    }
    return a == b;
}

void expect_same_records(const std::string & rpc_file, const std::string & local_file) {
    std::istringstream r(slurp(rpc_file)), l(slurp(local_file));
    std::string lr, ll;
    int n = 0;
    while (std::getline(l, ll)) {
        ASSERT_TRUE((bool) std::getline(r, lr)) << rpc_file << " has fewer records than " << local_file;
        std::string where;
        EXPECT_TRUE(same_record(json::parse(lr), json::parse(ll), where))
            << "record " << n + 1 << " differs at " << where << "\nrpc:   " << lr << "\nlocal: " << ll;
        ++n;
    }
    EXPECT_FALSE((bool) std::getline(r, lr)) << rpc_file << " has more records";
    EXPECT_GT(n, 0);
}

void expect_one_clear_error(const Outcome & o, const std::string & needle) {
    kvlens::test::expect_one_clear_error(o.rc, o.out, needle);
}

const char * kF32 = " -ctk f32 -ctv f32 -t 1";

// kv-dump: every layer's K and V rows of the prompt and 8 generated tokens, local vs the last 3 layers and the
// output on two servers (-ngl 4 -ts 1,1; the first layers stay on the CPU) vs everything on them (the -ngl default
// with --rpc).
TEST(Rpc, KvDumpRowsEqualALocalRun) {
    test::TempDir d;
    TwoServers s(d.path);
    REQUIRE_SERVERS(s);
    KVLENS_REQUIRE_FILE(test::llama_dir() + "/models/ggml-vocab-qwen2.gguf");
    for (const std::string & m : {qwen3_model(d.path), reasoner()}) {
        const std::string base = "kv-dump -m " + m + " -p 'The KV cache is a free representation' -n 8" + kF32;
        Outcome o = cli(base + " -o " + d.path + "/local");
        ASSERT_EQ(o.rc, 0) << o.out;
        for (const std::string & split : {std::string(" -ngl 4 -ts 1,1"), std::string("")}) {
            const std::string out = d.path + "/rpc" + std::to_string(split.size());
            o = cli(base + " " + s.rpc() + split + " -o " + out);
            ASSERT_EQ(o.rc, 0) << o.out;
            for (const char * f : {"/k.npy", "/v.npy"})
                EXPECT_LE(max_abs_diff(out + f, d.path + "/local" + f), 1e-5) << m << split << f;
            auto lm = json::parse(slurp(d.path + "/local/manifest.json")), rm = json::parse(slurp(out + "/manifest.json"));
            EXPECT_EQ(rm["tokens"], lm["tokens"]) << m << split << ": the greedy tokens differ";
            EXPECT_EQ(rm["n_layer"], lm["n_layer"]);
        }
    }
    // the servers are ggml devices now: `info` lists them
    Outcome o = cli("info -m " + reasoner() + " " + s.rpc());
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("RPC0: " + s.a.endpoint()), std::string::npos) << o.out;
    EXPECT_NE(o.out.find("RPC1: " + s.b.endpoint()), std::string::npos) << o.out;
}

// coe (KV-CoE records: scores from the tapped rows) and think (classifier decisions from the tapped rows, the
// generated tokens, the switch; on the random Qwen3, which has no classifier, the slow policy) with layers on the
// servers: the local run's records.
TEST(Rpc, CoeAndThinkRecordsEqualALocalRun) {
    test::TempDir d;
    TwoServers s(d.path);
    REQUIRE_SERVERS(s);
    ASSERT_EQ(cli("arith -n 3 --seed 7 -o " + d.path + "/q.jsonl").rc, 0);
    const std::string rpc = " " + s.rpc() + " -ngl 4 -ts 1,2";
    const std::string qwen3 = qwen3_model(d.path);
    const std::vector<std::string> runs = {
        "coe -m " + reasoner() + " --data " + d.path + "/q.jsonl --format arith -n 96" + kF32,
        "coe -m " + qwen3 + " --data " + d.path + "/q.jsonl --format arith --mode slow -n 8" + kF32,
        "think -m " + reasoner() + " --classifier " + classifier() + " --arith 3 --slow-cap 160" + kF32,
        // a random model has no classifier of its own: its think runs with a fixed policy
        "think -m " + qwen3 + " --policy slow --arith 3 --slow-cap 8" + kF32,
    };
    for (size_t i = 0; i < runs.size(); ++i) {
        const std::string local = d.path + "/local" + std::to_string(i) + ".jsonl", remote = d.path + "/rpc" + std::to_string(i) + ".jsonl";
        Outcome o = cli(runs[i] + " -o " + local);
        ASSERT_EQ(o.rc, 0) << o.out;
        o = cli(runs[i] + rpc + " -o " + remote);
        ASSERT_EQ(o.rc, 0) << o.out;
        expect_same_records(remote, local);
    }
}

// A server killed while a run decodes on it: exit 1 with one error line naming the servers, well before the
// timeout (no hang); the records written before it are whole lines, and a rerun resumes from them.
TEST(Rpc, ALostServerEndsTheRunWithOneErrorLine) {
    test::TempDir d;
    TwoServers s(d.path);
    REQUIRE_SERVERS(s);
    ASSERT_EQ(cli("arith -n 40 --seed 3 -o " + d.path + "/q.jsonl").rc, 0);
    const std::string out = d.path + "/r.jsonl", err = d.path + "/err.txt";
    const std::string cmd = "coe -m " + reasoner() + " --data " + d.path + "/q.jsonl --format arith -n 128 -t 1 " +
                            s.rpc() + " -o " + out;
    pid_t pid = fork();
    if (pid == 0) {
        const std::string sh = "exec timeout -s KILL 120 " + test::kvlens_bin() + " " + cmd + " </dev/null >/dev/null 2>" + err;
        execl("/bin/sh", "sh", "-c", sh.c_str(), (char *) nullptr);
        _exit(127);
    }
    // wait for the first record, then kill the second server
    for (int i = 0; i < 600 && slurp(out).find('\n') == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_NE(slurp(out).find('\n'), std::string::npos) << "no record within 60 s: " << slurp(err);
    const auto t0 = std::chrono::steady_clock::now();
    s.b.kill_now();
    int st = 0;
    waitpid(pid, &st, 0);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(WIFEXITED(st)) << "killed by a signal (the timeout: a hang?) after " << secs << " s: " << slurp(err);
    EXPECT_EQ(WEXITSTATUS(st), 1) << slurp(err);
    EXPECT_LT(secs, 30) << "took " << secs << " s to notice";
    const std::string e = slurp(err);
    const size_t first = e.find("kvlens: error: ");
    ASSERT_NE(first, std::string::npos) << e;
    EXPECT_EQ(e.find("kvlens: error: ", first + 1), std::string::npos) << e;
    EXPECT_NE(e.find("lost an RPC server (" + s.a.endpoint() + "," + s.b.endpoint() + ")"), std::string::npos) << e;
    EXPECT_EQ(e.find("ggml_abort"), std::string::npos) << "a backtrace: " << e;
    // whole lines only; a rerun on the surviving server alone resumes (records are the same for any placement)
    const std::string done = slurp(out);
    ASSERT_FALSE(done.empty());
    EXPECT_EQ(done.back(), '\n') << "torn last record";
    std::istringstream in(done);
    int n = 0;
    for (std::string line; std::getline(in, line); ++n) EXPECT_FALSE(json::parse(line, nullptr, false).is_discarded()) << line;
    Outcome o = cli("coe -m " + reasoner() + " --data " + d.path + "/q.jsonl --format arith -n 128 -t 1 --limit " +
                    std::to_string(n + 1) + " --rpc " + s.a.endpoint() + " -o " + out);
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("(1 new)"), std::string::npos) << o.out;
}

// Endpoints ggml-rpc would abort on are refused first, with one line; so are -ts lists that do not fit.
TEST(Rpc, BadEndpointsAreOneClearError) {
    test::TempDir d;
    const std::string m = " -m " + reasoner() + " -p hi -o " + d.path + "/x";
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:" + std::to_string(free_port())), "cannot connect");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc localhost"), "is not HOST:PORT");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:0"), "bad port");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:70000"), "bad port");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:5,"), "is not HOST:PORT");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:5,127.0.0.1:5"), "listed twice");
    expect_one_clear_error(cli("kv-dump" + m + " --rpc no-such-host.invalid:50052"), "cannot resolve host");
    // a listener that is not an RPC server (accepts, never answers): the handshake times out
    int l = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(l, (sockaddr *) &a, sizeof a), 0);
    ASSERT_EQ(listen(l, 4), 0);
    socklen_t len = sizeof a;
    getsockname(l, (sockaddr *) &a, &len);
    expect_one_clear_error(cli("kv-dump" + m + " --rpc 127.0.0.1:" + std::to_string(ntohs(a.sin_port))), "no RPC handshake");
    close(l);
    TwoServers s(d.path);
    REQUIRE_SERVERS(s);
    expect_one_clear_error(cli("kv-dump" + m + " " + s.rpc() + " -ts 1,1,1"), "-ts gives 3 shares but there are 2");
    expect_one_clear_error(cli("kv-dump" + m + " " + s.rpc() + " -ts 0,0"), "sum to 0");
    expect_one_clear_error(cli("kv-dump" + m + " -ts 1,x"), "-ts");
    expect_one_clear_error(cli("kv-dump" + m + " -ngl -2"), "-ngl");
}

}  // namespace
}  // namespace kvlens
