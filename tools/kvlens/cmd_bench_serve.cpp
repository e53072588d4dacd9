// kvlens bench serve: completion tokens/s and p50/p99 request latency of `kvlens serve` at 1, 4, 8 concurrent
// clients, beside llama-server built from the pinned tree (scripts/build-llama-server.sh), same model, threads,
// slots, context and cache, in the same run. Both servers run as child processes on loopback; every client sends
// the same chat requests (greedy, the same max_tokens). kvlens runs with thinking fixed (the template's slow
// mode, what llama-server renders) and, with a classifier, adaptive. --soak S: S seconds of the kvlens server at
// the most clients, counting errors and sampling its resident memory.
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "httplib.h"
#include "kvlens/arith.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/prompt.h"
#include "kvlens/random_model.h"

using namespace kvlens;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

std::string self_exe() {
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) throw Error("cannot find the kvlens binary (/proc/self/exe)");
    exe[n] = 0;
    return exe;
}


// A server child process: its stderr/stdout in a log file, SIGTERM when done.
struct Child {
    std::string name, log;
    pid_t pid = -1;
    int port = 0;
    Child(std::string nm, const std::vector<std::string> & args, int p) : name(std::move(nm)), port(p) {
        log = "/tmp/kvlens-bench-serve-" + std::to_string(getpid()) + "-" + name + ".log";
        pid = fork();
        if (pid < 0) throw Error("fork failed");
        if (pid == 0) {
            int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(fd, 1);
            dup2(fd, 2);
            std::vector<char *> av;
            for (auto & a : args) av.push_back(const_cast<char *>(a.c_str()));
            av.push_back(nullptr);
            execv(av[0], av.data());
            _exit(127);
        }
        for (int i = 0; i < 1200; ++i) {  // <= 120 s until /health says ok
            int st = 0;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                throw Error(name + " exited while starting; its log: " + log + "\n" + tail());
            }
            httplib::Client c("127.0.0.1", port);
            c.set_connection_timeout(1, 0);
            auto r = c.Get("/health");
            if (r && r->status == 200) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        stop();
        throw Error(name + " did not become healthy within 120 s; its log: " + log);
    }
    std::string tail() const {
        std::ifstream in(log);
        std::stringstream ss;
        ss << in.rdbuf();
        std::string t = ss.str();
        return t.size() > 2000 ? t.substr(t.size() - 2000) : t;
    }
    long rss_kb() const {
        std::ifstream in("/proc/" + std::to_string(pid) + "/status");
        for (std::string l; std::getline(in, l);)
            if (l.rfind("VmRSS:", 0) == 0) return std::atol(l.c_str() + 6);
        return -1;
    }
    int stop() {
        if (pid <= 0) return 0;
        kill(pid, SIGTERM);
        int st = 0;
        for (int i = 0; i < 300; ++i) {
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        pid = -1;
        return -1;
    }
    ~Child() {
        stop();
        std::remove(log.c_str());
    }
};

struct Load {
    double seconds = 0, tok_s = 0, p50 = 0, p99 = 0, mean_tokens = 0;
    long tokens = 0, requests = 0, errors = 0;
    std::string first_error;
};

double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, (size_t) std::ceil(q * v.size()) - (q > 0 ? 1 : 0));
    return v[i];
}

// n requests (body(i)) over `clients` connections, or until `until` when given; latency per request end to end.
Load load(int port, int clients, int n, const std::function<json(int)> & body, const std::string & path,
          Clock::time_point until = {}) {
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<double> lat;
    Load L;
    const bool timed = until != Clock::time_point{};
    const auto t0 = Clock::now();
    std::vector<std::thread> th;
    for (int w = 0; w < clients; ++w)
        th.emplace_back([&] {
            httplib::Client c("127.0.0.1", port);
            c.set_read_timeout(600, 0);
            for (;;) {
                const int i = next++;
                if (timed ? Clock::now() >= until : i >= n) return;
                const auto s = Clock::now();
                auto r = c.Post(path, body(i).dump(), "application/json");
                const double dt = std::chrono::duration<double>(Clock::now() - s).count();
                std::lock_guard<std::mutex> l(mu);
                ++L.requests;
                json j = r ? json::parse(r->body, nullptr, false) : json();
                if (!r || r->status != 200 || !j.is_object() || !j.contains("usage")) {
                    ++L.errors;
                    if (L.first_error.empty())
                        L.first_error = r ? std::to_string(r->status) + " " + r->body.substr(0, 300) : httplib::to_string(r.error());
                    continue;
                }
                L.tokens += j["usage"].value("completion_tokens", 0);
                lat.push_back(dt);
            }
        });
    for (auto & t : th) t.join();
    L.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    L.tok_s = L.tokens / L.seconds;
    L.p50 = quantile(lat, 0.5);
    L.p99 = quantile(lat, 0.99);
    L.mean_tokens = lat.empty() ? 0 : (double) L.tokens / lat.size();
    return L;
}

}  // namespace

namespace kvlens::cli {

int free_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (sockaddr *) &a, sizeof a) != 0 || getsockname(fd, (sockaddr *) &a, &len) != 0) {
        if (fd >= 0) close(fd);
        throw Error("cannot find a free loopback port");
    }
    close(fd);
    return ntohs(a.sin_port);
}

}  // namespace kvlens::cli

static int bench_serve(int argc, char ** argv) {
    CLI::App app{"kvlens serve vs llama-server: completion tokens/s and p50/p99 latency at 1, 4, 8 clients (+ a soak)",
                 "kvlens bench serve"};
    cli::CommonArgs a;
    std::string shape, wtype = "q8_0", vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", json_out, clients_s = "1,4,8", clf;
    std::string llama_server = KVLENS_LLAMA_SERVER;
    int n_parallel = 8, requests = 32, max_tokens = 64, soak = 0, n_ctx_seq = 0, reps = 1;
    a.model.path = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";
    app.add_option("-m,--model", a.model.path, "model GGUF")->capture_default_str();
    app.add_option("--shape", shape, "instead of -m: generate a random-weight model of this shape (e.g. qwen3-0.6b)");
    app.add_option("--wtype", wtype, "weight type of the generated model")->capture_default_str();
    app.add_option("--vocab", vocab, "vocabulary GGUF for the generated model");
    app.add_option("--cache-dir", cache_dir, "where generated models are kept")->capture_default_str();
    app.add_option("--classifier", clf, "KVClassifier GGUF: also measure thinking: adaptive");
    app.add_option("--clients", clients_s, "concurrent clients, a list")->capture_default_str();
    app.add_option("--requests", requests, "requests per point")->capture_default_str();
    app.add_option("--max-tokens", max_tokens, "max_tokens of every request")->capture_default_str();
    app.add_option("--ctx-per-slot", n_ctx_seq, "context per slot when -c is not given (default: the model's, at most 4096); -c = slots x this");
    app.add_option("--reps", reps, "repetitions per point, interleaved across the servers (median tokens/s)")->capture_default_str();
    app.add_option("--soak", soak, "then this many seconds of kvlens serve at the most clients: errors, resident memory");
    std::vector<std::string> serve_extra;
    app.add_option("--serve-arg", serve_extra, "an extra argument for kvlens serve (repeat: --serve-arg=--no-confidence)");
    app.add_option("--llama-server", llama_server, "llama-server binary of the pinned tree ('' to skip it)");
    app.add_option("--json", json_out, "also write the results as JSON");
    cli::add_parallel_flag(app, n_parallel);
    cli::add_session_flags(app, a);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!json_out.empty()) check_writable(json_out);
    if (requests < 1 || max_tokens < 1 || soak < 0 || n_parallel < 1 || reps < 1)
        throw Error("--requests, --max-tokens, --reps and -np must be >= 1, --soak >= 0");
    const std::vector<int> clients = cli::parse_ints(clients_s, "--clients");
    if (!llama_server.empty() && !std::filesystem::exists(llama_server))
        throw Error("no llama-server at " + llama_server + ": build it with scripts/build-llama-server.sh, or pass --llama-server ''");
    if (!shape.empty()) a.model.path = cached_shape_model(shape, wtype, vocab, cache_dir);
    if (!std::filesystem::exists(a.model.path)) throw Error("no model at " + a.model.path);
    int n_ctx_train = 0;
    {
        auto m = cli::load_model(a);  // validates the model (and the classifier's fit) before any server starts
        n_ctx_train = m->facts().n_ctx_train;
    }
    if (n_ctx_seq <= 0) n_ctx_seq = std::min(n_ctx_train > 0 ? n_ctx_train : 4096, 4096);
    const int n_ctx = a.session.n_ctx > 0 ? a.session.n_ctx : n_ctx_seq * n_parallel;
    const SessionParams & sp = a.session;
    const std::string t = std::to_string(sp.n_threads > 0 ? sp.n_threads : (int) std::max(1u, std::thread::hardware_concurrency()));
    std::vector<std::string> common = {"-m", a.model.path, "-c", std::to_string(n_ctx), "-np", std::to_string(n_parallel),
                                       "-t", t, "-b", std::to_string(sp.n_batch), "-ub", std::to_string(sp.n_batch),
                                       "-fa", sp.flash_attn, "-ctk", sp.cache_type_k, "-ctv", sp.cache_type_v, "--host", "127.0.0.1"};

    std::unique_ptr<Child> ref, kv;
    if (!llama_server.empty()) {
        const int p = cli::free_port();
        std::vector<std::string> args = {llama_server};
        args.insert(args.end(), common.begin(), common.end());
        for (const std::string & x : std::vector<std::string>{"--port", std::to_string(p), "--jinja", "-tb", t, "--no-webui", "--no-warmup"})
            args.push_back(x);
        std::fprintf(stderr, "bench serve: starting llama-server on port %d\n", p);
        ref = std::make_unique<Child>("llama-server", args, p);
    }
    {
        const int p = cli::free_port();
        std::vector<std::string> args = {self_exe(), "serve"};
        args.insert(args.end(), common.begin(), common.end());
        for (const std::string & x : std::vector<std::string>{"--port", std::to_string(p), "--queue-size", "1024"}) args.push_back(x);
        args.insert(args.end(), serve_extra.begin(), serve_extra.end());
        if (!clf.empty()) {
            args.push_back("--classifier");
            args.push_back(clf);
        }
        std::fprintf(stderr, "bench serve: starting kvlens serve on port %d\n", p);
        kv = std::make_unique<Child>("kvlens-serve", args, p);
    }

    auto question = [](int i) { return arith_generate(1 + i % 5, (uint64_t) (1000 + i) | kArithEvalSeedBit).question; };
    // The same slow prompt for both servers: the chat turn kvlens renders from the GGUF's template + the slow
    // prefix, sent raw to /v1/completions — so both generate the same greedy tokens, and the ratio is the servers'.
    std::vector<std::string> raw(requests);
    {
        auto m = cli::load_model(a);
        const PromptFormat f = prompt_format(*m, "auto");
        for (int i = 0; i < requests; ++i) raw[i] = f.render(*m, question(i)) + f.slow_prefix;
    }
    auto completion = [&](int i) {
        return json{{"prompt", raw[i % requests]}, {"max_tokens", max_tokens}, {"temperature", 0}, {"seed", 0}};
    };
    auto chat = [&](int i, const char * thinking) {
        return json{{"messages", {{{"role", "user"}, {"content", question(i)}}}}, {"max_tokens", max_tokens}, {"temperature", 0},
                    {"seed", 0}, {"thinking", thinking}};
    };
    std::printf("Same slow prompt, /v1/completions: llama-server vs kvlens; then kvlens chat (thinking slow, with its "
                "classifier/KV-CoE taps)%s. tok/s = completion tokens / wall time; latency per request, seconds.\n\n",
                clf.empty() ? "" : " and adaptive");
    std::printf("| clients | llama-server tok/s | p50 | p99 | kvlens tok/s | vs llama-server | p50 | p99 | kvlens chat slow tok/s "
                "| vs llama-server | p50 | p99 |%s tokens/request |\n|---|---|---|---|---|---|---|---|---|---|---|---|%s---|\n",
                clf.empty() ? "" : " adaptive tok/s | p50 | p99 |", clf.empty() ? "" : "---|---|---|");
    json rows = json::array();
    long errors = 0;
    auto med = [&](std::vector<Load> v, const std::string & who) {
        for (auto & l : v) {
            errors += l.errors;
            if (l.errors) std::fprintf(stderr, "bench serve: %s: %ld errors, first: %s\n", who.c_str(), l.errors, l.first_error.c_str());
        }
        std::sort(v.begin(), v.end(), [](const Load & x, const Load & y) { return x.tok_s < y.tok_s; });
        return v.empty() ? Load{} : v[v.size() / 2];
    };
    auto jl = [](const Load & l) {
        return json{{"tok_s", l.tok_s}, {"p50", l.p50}, {"p99", l.p99}, {"tokens", l.tokens}, {"requests", l.requests}, {"errors", l.errors}};
    };
    for (int nc : clients) {
        std::fprintf(stderr, "bench serve: %d client(s) ...\n", nc);
        std::vector<Load> vr, vk, vs, va;
        for (int rep = 0; rep < reps; ++rep) {  // interleaved: whatever else the machine does hits every server alike
            if (ref) vr.push_back(load(ref->port, nc, requests, completion, "/v1/completions"));
            vk.push_back(load(kv->port, nc, requests, completion, "/v1/completions"));
            vs.push_back(load(kv->port, nc, requests, [&](int i) { return chat(i, "slow"); }, "/v1/chat/completions"));
            if (!clf.empty())
                va.push_back(load(kv->port, nc, requests, [&](int i) { return chat(i, "adaptive"); }, "/v1/chat/completions"));
        }
        const Load r = med(vr, "llama-server"), k = med(vk, "kvlens"), sl = med(vs, "kvlens chat slow"),
                   ad = med(va, "kvlens chat adaptive");
        auto f = [](double x, const char * fmt) {
            char b[32];
            std::snprintf(b, sizeof b, fmt, x);
            return std::string(b);
        };
        auto ratio = [&](double x) { return ref && r.tok_s > 0 ? f(x / r.tok_s, "%.2f") : std::string("-"); };
        std::string tokens = (ref ? f(r.mean_tokens, "%.1f") + " / " : std::string()) + f(k.mean_tokens, "%.1f") + " / " +
                             f(sl.mean_tokens, "%.1f") + (clf.empty() ? "" : " / " + f(ad.mean_tokens, "%.1f"));
        std::printf("| %d | %s | %s | %s | %.1f | %s | %.3f | %.3f | %.1f | %s | %.3f | %.3f |", nc,
                    ref ? f(r.tok_s, "%.1f").c_str() : "-", ref ? f(r.p50, "%.3f").c_str() : "-", ref ? f(r.p99, "%.3f").c_str() : "-",
                    k.tok_s, ratio(k.tok_s).c_str(), k.p50, k.p99, sl.tok_s, ratio(sl.tok_s).c_str(), sl.p50, sl.p99);
        if (!clf.empty()) std::printf(" %.1f | %.3f | %.3f |", ad.tok_s, ad.p50, ad.p99);
        std::printf(" %s |\n", tokens.c_str());
        std::fflush(stdout);
        json row = {{"clients", nc}, {"kvlens_completions", jl(k)}, {"kvlens_chat_slow", jl(sl)}};
        if (ref) row["llama_server_completions"] = jl(r);
        if (!clf.empty()) row["kvlens_chat_adaptive"] = jl(ad);
        rows.push_back(row);
    }
    json soak_j;
    if (soak > 0) {
        const int nc = *std::max_element(clients.begin(), clients.end());
        std::fprintf(stderr, "bench serve: soak, %d s at %d clients ...\n", soak, nc);
        std::vector<std::pair<double, long>> rss;
        std::atomic<bool> done{false};
        const auto t0 = Clock::now();
        std::thread sampler([&] {
            while (!done) {
                rss.push_back({std::chrono::duration<double>(Clock::now() - t0).count(), kv->rss_kb()});
                for (int i = 0; i < 50 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
        Load L = load(kv->port, nc, 0, [&](int i) { return chat(i, clf.empty() ? "slow" : "adaptive"); }, "/v1/chat/completions",
                      t0 + std::chrono::seconds(soak));
        done = true;
        sampler.join();
        errors += L.errors;
        // flat: the resident set after the first tenth of the soak (warm) against the end and the peak
        long warm = rss.front().second, peak = 0;
        for (auto & [ts, kb] : rss) {
            if (ts <= soak / 10.0) warm = kb;
            peak = std::max(peak, kb);
        }
        const long last = rss.back().second;
        std::printf("\nsoak: %d s at %d clients: %ld requests, %ld errors, %.1f tok/s; resident memory %.1f MB warm, %.1f MB at "
                    "the end (%+.1f%%), %.1f MB peak\n",
                    soak, nc, L.requests, L.errors, L.tok_s, warm / 1024.0, last / 1024.0, 100.0 * (last - warm) / warm, peak / 1024.0);
        json samples = json::array();
        for (auto & [ts, kb] : rss) samples.push_back({ts, kb});
        soak_j = {{"seconds", soak}, {"clients", nc}, {"requests", L.requests}, {"errors", L.errors}, {"tok_s", L.tok_s},
                  {"rss_kb_warm", warm}, {"rss_kb_end", last}, {"rss_kb_peak", peak}, {"rss_kb", samples}};
    }
    const int st_kv = kv->stop();
    const int st_ref = ref ? ref->stop() : 0;
    if (st_kv != 0) std::fprintf(stderr, "kvlens: warning: kvlens serve exited with status %d\n", st_kv);
    if (!json_out.empty())
        write_text_atomic(json_out, json{{"model", a.model.path}, {"np", n_parallel}, {"n_ctx", n_ctx}, {"threads", t},
                                         {"max_tokens", max_tokens}, {"requests", requests}, {"rows", rows}, {"soak", soak_j},
                                         {"llama_server_exit", st_ref}, {"kvlens_exit", st_kv}}.dump(1) + "\n");
    if (errors) throw Error(std::to_string(errors) + " requests failed (see above)");
    return st_kv == 0 ? 0 : 1;
}

KVLENS_BENCH("serve", "kvlens serve vs llama-server: tokens/s, p50/p99 latency at 1/4/8 clients, and a soak", bench_serve);
