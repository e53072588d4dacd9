// kvlens serve: an OpenAI-compatible HTTP server (llama-server's API) on kvlens's own engine and ThinkRunner, so
// every answer can think adaptively (KV classifier + online switch) and carries its KV-CoE confidence.
// HTTP: cpp-httplib (the copy vendored in the pinned llama.cpp, already linked through llama-common).
// Model side: serve_engine.h's Engine: -np sequences on one context (continuous batching), a bounded FIFO.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>


#include "args.h"
#include "httplib.h"
#include "command.h"
#include "kvlens/embed.h"
#include "kvlens/error.h"
#include "kvlens/think.h"
#include "serve_engine.h"
#include "serve_request.h"
#include "serve_text.h"

using namespace kvlens;
using namespace kvlens::serve;
using Clock = std::chrono::steady_clock;

namespace {

// ---- errors -----------------------------------------------------------------------------------------

json error_body(int status, const std::string & type, const std::string & msg) {
    return {{"error", {{"code", status}, {"message", msg}, {"type", type}}}};
}

std::string b64(const void * data, size_t n) {
    static const char * tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char * p = (const unsigned char *) data;
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        out += tab[v >> 18 & 63];
        out += tab[v >> 12 & 63];
        out += i + 1 < n ? tab[v >> 6 & 63] : '=';
        out += i + 2 < n ? tab[v & 63] : '=';
    }
    return out;
}

// ---- the server -------------------------------------------------------------------------------------

std::atomic<int> g_signal{0};
void on_signal(int s) { g_signal = s; }

struct Server {
    ServeConfig cfg;
    std::string alias, model_path, api_key;
    int cfg_budget = -1;             // --reasoning-budget
    std::string cfg_budget_message;  // --reasoning-budget-message
    std::atomic<bool> ready{false};
    std::unique_ptr<serve::Engine> engine;
    Metrics metrics;
    std::mutex render_mu;  // the chat template engine is used from the HTTP threads one at a time
    std::mutex jobs_mu;
    std::map<std::string, std::weak_ptr<Job>> live;  // id -> running chat, for /control
    std::atomic<long long> next_id{1};
    std::atomic<int> inflight{0};      // chat/completion requests between submit and their last byte
    std::atomic<bool> draining{false};  // after SIGINT/SIGTERM: new requests get 503
    long long started = (long long) std::time(nullptr);

    std::string new_id(const char * prefix) {
        char b[64];
        std::snprintf(b, sizeof b, "%s%llx%06llx", prefix, (long long) started, next_id++);
        return b;
    }

    void reply_error(httplib::Response & res, int status, const std::string & type, const std::string & msg) {
        res.status = status;
        res.set_content(error_body(status, type, msg).dump(), "application/json");
    }

    RequestRules rules() const {
        RequestRules r;
        r.alias = alias, r.model_path = model_path, r.sampling = cfg.sampling, r.classifier = cfg.clf != nullptr;
        r.reasoning_budget = cfg_budget, r.budget_message = cfg_budget_message;
        return r;
    }

    // A chat request: parsed (serve_request.cpp), then rendered and checked against the context.
    std::shared_ptr<Job> parse_chat(const json & b) {
        auto job = std::make_shared<Job>();
        const std::vector<ChatMessage> ms = serve::parse_chat(b, rules(), *job);
        const Model & m = *cfg.model;
        size_t need = 0;
        {
            std::lock_guard<std::mutex> l(render_mu);
            try {
                job->input.rendered = cfg.fmt.render_messages(m, ms);
            } catch (const Error & e) {
                throw bad_request(e.what());
            }
            need = PromptFormat::tokenize(m, job->input.rendered).size() +
                   std::max(m.tokenize(cfg.fmt.fast_prefix, false, true).size(), m.tokenize(cfg.fmt.slow_prefix, false, true).size()) + 8;
        }
        if ((int) need > engine->n_ctx())
            throw ApiError(400, "exceed_context_size_error",
                           "the request (" + std::to_string(need) + " tokens with the mode prefix and room to answer) exceeds the context size (" +
                               std::to_string(engine->n_ctx()) + " tokens, -c)");
        return job;
    }

    std::shared_ptr<Job> parse_completion(const json & b) {
        auto job = std::make_shared<Job>();
        const std::string text = serve::parse_completion(b, rules(), *job);
        job->prompt = PromptFormat::tokenize(*cfg.model, text);
        if ((int) job->prompt.size() + 1 > engine->n_ctx())
            throw ApiError(400, "exceed_context_size_error", "the prompt (" + std::to_string(job->prompt.size()) +
                                                                 " tokens) exceeds the context size (" + std::to_string(engine->n_ctx()) + " tokens, -c)");
        return job;
    }

    // Queue a job; stream its events or wait for the end.
    void run_job(std::shared_ptr<Job> job, bool stream, const httplib::Request & req, httplib::Response & res) {
        if (draining) throw ApiError(503, "unavailable_error", "the server is shutting down");
        job->wake_on_delta = stream;
        if (!engine->submit(job)) throw ApiError(503, "unavailable_error", "the server is busy: the request queue is full");
        const bool chat = job->kind == Job::Chat;
        const std::string id = job->id;
        const long long created = (long long) std::time(nullptr);
        if (chat) {
            std::lock_guard<std::mutex> l(jobs_mu);
            live[id] = job;
        }
        ++inflight;
        auto forget = [this, id, chat] {
            --inflight;
            if (!chat) return;
            std::lock_guard<std::mutex> l(jobs_mu);
            live.erase(id);
        };
        auto chunk = [=](const json & delta, const json & finish) {
            json c;
            if (chat) {
                c = {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", alias},
                     {"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
            } else {
                c = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", alias},
                     {"choices", json::array({{{"index", 0}, {"text", delta.value("content", "")}, {"logprobs", nullptr},
                                               {"finish_reason", finish}}})}};
            }
            return c;
        };
        if (!stream) {
            std::string reasoning, content;
            for (;;) {
                auto e = job->next(std::chrono::milliseconds(100));
                if (!e) {
                    if (req.is_connection_closed()) {
                        job->cancelled = true;
                        forget();
                        return;
                    }
                    continue;
                }
                if (e->kind == Event::Delta) {
                    reasoning += e->reasoning;
                    content += e->content;
                    continue;
                }
                forget();
                if (e->kind == Event::Error) {
                    reply_error(res, e->result["status"], e->result["type"], e->result["message"]);
                    return;
                }
                json out;
                if (chat) {
                    json msg = {{"role", "assistant"}, {"content", content}};
                    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
                    out = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", alias},
                           {"choices", json::array({{{"index", 0}, {"message", msg}, {"finish_reason", e->result["finish_reason"]}}})}};
                } else {
                    out = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", alias},
                           {"choices", json::array({{{"index", 0}, {"text", content}, {"logprobs", nullptr},
                                                     {"finish_reason", e->result["finish_reason"]}}})}};
                }
                out["usage"] = e->result["usage"];
                out["kvlens"] = e->result["kvlens"];
                res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
                return;
            }
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [=](size_t, httplib::DataSink & sink) {
            auto send = [&](const json & j) {
                const std::string s = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
                return sink.write(s.data(), s.size());
            };
            bool first = true;
            for (;;) {
                auto e = job->next(std::chrono::milliseconds(100));
                if (!e) {
                    if (!sink.is_writable()) {
                        job->cancelled = true;
                        forget();
                        return false;
                    }
                    continue;
                }
                bool ok = true;
                if (e->kind == Event::Delta) {
                    if (chat && first) ok = send(chunk({{"role", "assistant"}, {"content", nullptr}}, nullptr));
                    first = false;
                    json d = json::object();
                    if (!e->reasoning.empty()) d["reasoning_content"] = e->reasoning;
                    if (!e->content.empty()) d["content"] = e->content;
                    ok = ok && send(chunk(d, nullptr));
                } else {
                    if (e->kind == Event::Error) {
                        send(error_body(e->result["status"], e->result["type"], e->result["message"]));
                    } else {
                        json c = chunk(json::object(), e->result["finish_reason"]);
                        c["usage"] = e->result["usage"];
                        c["kvlens"] = e->result["kvlens"];
                        send(c);
                    }
                    const std::string done = "data: [DONE]\n\n";
                    sink.write(done.data(), done.size());
                    sink.done();
                    forget();
                    return true;
                }
                if (!ok) {  // the client went away: cancel its generation
                    job->cancelled = true;
                    forget();
                    return false;
                }
            }
        });
    }

    void routes(httplib::Server & svr) {
        auto guard = [this](auto && fn) {
            return [this, fn](const httplib::Request & req, httplib::Response & res) {
                try {
                    if (!ready && req.path != "/health") throw ApiError(503, "unavailable_error", "Loading model");
                    if (!api_key.empty() && req.path != "/health" && req.path != "/v1/health" && req.path != "/v1/models" &&
                        req.path != "/models") {
                        const std::string a = req.get_header_value("Authorization");
                        const std::string x = req.get_header_value("X-Api-Key");
                        if (a != "Bearer " + api_key && x != api_key) throw ApiError(401, "authentication_error", "Invalid API Key");
                    }
                    fn(req, res);
                } catch (const ApiError & e) {
                    reply_error(res, e.status, e.type, e.what());
                } catch (const std::exception & e) {
                    reply_error(res, 500, "server_error", e.what());
                }
            };
        };
        auto health = [this](const httplib::Request &, httplib::Response & res) {
            if (!ready) {
                res.status = 503;
                res.set_content(json{{"status", "loading"}, {"error", {{"code", 503}, {"message", "Loading model"}, {"type", "unavailable_error"}}}}.dump(),
                                "application/json");
                return;
            }
            res.set_content(R"({"status":"ok"})", "application/json");
        };
        svr.Get("/health", health);
        svr.Get("/v1/health", health);
        auto models = guard([this](const httplib::Request &, httplib::Response & res) {
            const ModelFacts & f = cfg.model->facts();
            json m = {{"id", alias}, {"object", "model"}, {"created", started}, {"owned_by", "kvlens"},
                      {"meta", {{"n_ctx", engine->n_ctx()}, {"n_ctx_train", f.n_ctx_train}, {"n_vocab", f.n_vocab},
                                {"n_layer", f.n_layer}, {"n_params", f.n_params}, {"classifier", cfg.clf != nullptr},
                                {"prompt_format", cfg.fmt.describe()}}}};
            res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
        });
        svr.Get("/v1/models", models);
        svr.Get("/models", models);
        auto chat = guard([this](const httplib::Request & req, httplib::Response & res) {
            json b = parse_body(req.body);
            const bool stream = parse_stream(b);
            auto job = parse_chat(b);
            job->id = new_id("chatcmpl-");
            run_job(job, stream, req, res);
        });
        svr.Post("/v1/chat/completions", chat);
        svr.Post("/chat/completions", chat);
        auto compl_ = guard([this](const httplib::Request & req, httplib::Response & res) {
            json b = parse_body(req.body);
            const bool stream = parse_stream(b);
            auto job = parse_completion(b);
            job->id = new_id("cmpl-");
            run_job(job, stream, req, res);
        });
        svr.Post("/v1/completions", compl_);
        svr.Post("/completions", compl_);
        svr.Post("/v1/chat/completions/control", guard([this](const httplib::Request & req, httplib::Response & res) {
            json b = parse_body(req.body);
            const std::string id = parse_control(b);
            std::shared_ptr<Job> job;
            {
                std::lock_guard<std::mutex> l(jobs_mu);
                auto it = live.find(id);
                if (it != live.end()) job = it->second.lock();
            }
            json out;
            if (!job) out = {{"success", false}, {"message", "no running completion with this id"}};
            else if (!job->reasoning_control) out = {{"success", false}, {"message", "the completion was not started with reasoning_control: true"}};
            else {
                job->end_thinking = true;
                out = {{"success", true}};
            }
            res.set_content(out.dump(), "application/json");
        }));
        svr.Post("/v1/embeddings", guard([this](const httplib::Request & req, httplib::Response & res) {
            json b = parse_body(req.body);
            auto job = std::make_shared<Job>();
            const std::string fmt = parse_embeddings(b, rules(), *job);
            job->id = new_id("emb-");
            if (!engine->submit(job)) throw ApiError(503, "unavailable_error", "the server is busy: the request queue is full");
            std::optional<Event> e;
            while (!(e = job->next(std::chrono::milliseconds(100))))
                if (req.is_connection_closed()) {
                    job->cancelled = true;
                    return;
                }
            if (e->kind == Event::Error) throw ApiError(e->result["status"], e->result["type"], e->result["message"]);
            json data = json::array();
            int i = 0;
            for (auto & row : e->result["rows"]) {
                json item = {{"object", "embedding"}, {"index", i++}};
                if (fmt == "base64") {
                    std::vector<float> v = row.get<std::vector<float>>();
                    item["embedding"] = b64(v.data(), v.size() * sizeof(float));
                } else {
                    item["embedding"] = row;
                }
                data.push_back(item);
            }
            const int nt = e->result["prompt_tokens"];
            res.set_content(json{{"object", "list"}, {"data", data}, {"model", alias},
                                 {"usage", {{"prompt_tokens", nt}, {"total_tokens", nt}}},
                                 {"kvlens", {{"pooling", e->result["pooling"]}}}}.dump(),
                            "application/json");
        }));
        svr.Get("/metrics", guard([this](const httplib::Request &, httplib::Response & res) {
            res.set_content(metrics.text(engine->queue_depth(), engine->running(), engine->decodes(), engine->batch_tokens()), "text/plain; version=0.0.4");
        }));
        // unknown routes, over-long bodies and other library-made errors: OpenAI error objects
        svr.set_error_handler([this](const httplib::Request & req, httplib::Response & res) {
            if (!res.body.empty()) return;
            if (res.status == 404) reply_error(res, 404, "not_found_error", "File Not Found: " + req.method + " " + req.path);
            else if (res.status == 413) reply_error(res, 413, "invalid_request_error", "request body too large");
            else reply_error(res, res.status, "invalid_request_error", httplib::status_message(res.status));
        });
        svr.set_exception_handler([this](const httplib::Request &, httplib::Response & res, std::exception_ptr) {
            reply_error(res, 500, "server_error", "internal error");
        });
        svr.set_logger([this](const httplib::Request & req, const httplib::Response & res) {
            metrics.count(res.status);
            std::fprintf(stderr, "serve: %s %s %s -> %d (%zu bytes)\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(),
                         res.status, res.body.size());
        });
    }
};

}  // namespace

static int cmd_serve(int argc, char ** argv) {
    CLI::App app{"OpenAI-compatible server (llama-server's API) with KV-adaptive thinking, KV-CoE confidence and KV embeddings",
                 "kvlens serve"};
    cli::CommonArgs a;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    cli::add_sampling_flags(app, a);
    cli::PromptArgs pa;
    cli::add_prompt_flags(app, pa);
    std::string clf_path, host = "127.0.0.1", api_key, api_key_file, alias;
    int port = 8080, n_parallel = 1, timeout = 600, queue = 64;
    size_t max_body = 8u << 20;
    ThinkParams P;
    app.add_option("--classifier", clf_path, "KVClassifier GGUF: requests think adaptively by default");
    app.add_option("--host", host, "address to listen on")->capture_default_str();
    app.add_option("--port", port, "port to listen on (0: any free port, printed on stderr)")->capture_default_str();
    cli::add_parallel_flag(app, n_parallel);
    app.add_option("--api-key", api_key, "require 'Authorization: Bearer KEY'");
    app.add_option("--api-key-file", api_key_file, "read the API key from a file (first line)");
    app.add_option("--timeout", timeout, "server read/write timeout in seconds")->capture_default_str();
    app.add_option("-a,--alias", alias, "model name in the API (default: the model file's name)");
    app.add_option("--queue-size", queue, "requests waiting for a slot before the server answers 503")->capture_default_str();
    app.add_option("--max-body-size", max_body, "largest request body in bytes (larger: 413)")->capture_default_str();
    app.add_option("--tau", P.tau, "initial decision: fast if score < tau")->capture_default_str();
    app.add_option("--delta", P.delta, "online: switch when the score leaves 50 +- delta")->capture_default_str();
    app.add_option("--every", P.every, "online: score every k generated tokens")->capture_default_str();
    int budget = -1;
    std::string budget_message;
    app.add_option("--reasoning-budget", budget,
                   "thinking tokens before the think is closed: -1 unrestricted, 0 immediate end, N > 0 a budget "
                   "(a request's reasoning_budget_tokens overrides it)")->capture_default_str();
    app.add_option("--reasoning-budget-message", budget_message, "text written into the think before it is closed by the budget");
    bool no_conf = false;
    app.add_flag("--no-confidence", no_conf, "skip the KV-CoE confidence (taps only the classifier's layers)");
    bool cache_prompt = true;
    app.add_flag("--cache-prompt,!--no-cache-prompt", cache_prompt,
                 "reuse a slot's cached prefix of the prompt (llama-server's prompt caching; requests that tap — a "
                 "classifier window, the KV-CoE confidence — always start from an empty sequence)")
        ->capture_default_str();
    int token_delay = 0;
    app.add_option("--token-delay-ms", token_delay, "testing: sleep this long after each generated chat token (real-time control, disconnects)");
    app.add_option("--fast-cap", P.fast_cap, "generated tokens cap in fast mode")->capture_default_str();
    app.add_option("--slow-cap", P.slow_cap, "generated tokens cap in slow mode")->capture_default_str();
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    P.confidence = !no_conf;
    if (!api_key.empty() && !api_key_file.empty()) throw Error("give --api-key or --api-key-file, not both");
    if (!api_key_file.empty()) {
        std::ifstream in(api_key_file);
        if (!in) throw Error("cannot read --api-key-file " + api_key_file);
        std::getline(in, api_key);
        while (!api_key.empty() && (api_key.back() == '\r' || api_key.back() == ' ')) api_key.pop_back();
        if (api_key.empty()) throw Error("--api-key-file " + api_key_file + " is empty");
    }
    if (n_parallel < 1) throw Error("-np must be >= 1 (sequences decoded together)");
    if (budget < -1) throw Error("--reasoning-budget must be >= -1");
    if (!cli::valid_utf8(budget_message)) throw Error("--reasoning-budget-message is not valid UTF-8");
    if (port < 0 || port > 65535) throw Error("--port must be 0..65535");
    if (queue < 0) throw Error("--queue-size must be >= 0");
    if (timeout <= 0) throw Error("--timeout must be positive");

    Server S;
    S.api_key = api_key;
    S.cfg_budget = budget;
    S.cfg_budget_message = budget_message;
    S.model_path = a.model.path;
    S.alias = alias.empty() ? std::filesystem::path(a.model.path).filename().string() : alias;
    httplib::Server svr;
    svr.set_read_timeout(timeout);
    svr.set_write_timeout(timeout);
    svr.set_payload_max_length(max_body);
    S.routes(svr);
    if (port == 0) port = svr.bind_to_any_port(host);
    else if (!svr.bind_to_port(host, port)) port = -1;
    if (port < 0) throw Error("cannot listen on " + host + ":" + std::to_string(port < 0 ? 0 : port));
    std::fprintf(stderr, "serve: listening on http://%s:%d (loading %s)\n", host.c_str(), port, a.model.path.c_str());
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    std::thread http([&] { svr.listen_after_bind(); });
    svr.wait_until_ready();

    KvClassifier clf;
    int rc = 0;
    try {
        S.cfg.model = cli::load_model(a);
        if (!clf_path.empty()) {
            clf = KvClassifier::load(clf_path);
            clf.check_model(S.cfg.model->facts());
            const std::string w = clf.cache_mismatch(a.session.cache_type_k, a.session.cache_type_v, a.session.flash_attn);
            if (!w.empty()) std::fprintf(stderr, "kvlens: warning: %s\n", w.c_str());
            S.cfg.clf = &clf;
        }
        S.cfg.fmt = cli::make_prompt_format(*S.cfg.model, pa);
        S.cfg.engine = cli::engine_params(a, S.cfg.model->facts(), n_parallel);
        S.cfg.engine.reuse_prefix = cache_prompt;
        S.cfg.sampling = a.sampling;
        S.cfg.think = P;
        S.cfg.batch.n_threads = a.session.n_threads;
        S.cfg.batch.flash_attn = a.session.flash_attn;
        S.cfg.queue_max = queue;
        S.cfg.token_delay_ms = token_delay;
        S.engine = serve::make_engine(S.cfg, S.metrics);
        S.ready = true;
        std::fprintf(stderr, "serve: ready: model '%s', %d slot(s) of n_ctx %d, %s, classifier %s, queue %d\n", S.alias.c_str(),
                     S.engine->slots(), S.engine->n_ctx(), S.cfg.fmt.describe().c_str(), clf_path.empty() ? "none" : clf_path.c_str(),
                     queue);
    } catch (...) {
        svr.stop();
        http.join();
        throw;
    }
    // SIGINT/SIGTERM: stop accepting, let the running handlers (and their jobs) finish, then the engine, exit 0.
    while (!g_signal && svr.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_signal) {
        // stop accepting work (503), let the requests in flight finish (bounded by --timeout), then close
        S.draining = true;
        std::fprintf(stderr, "serve: signal %d: finishing %d in-flight request(s)\n", (int) g_signal, S.inflight.load());
        auto t0 = Clock::now();
        while (S.inflight > 0 && Clock::now() - t0 < std::chrono::seconds(timeout))
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the last bytes leave the socket
    }
    svr.stop();
    http.join();
    S.engine->shutdown();
    std::fprintf(stderr, "serve: stopped\n");
    return rc;
}

KVLENS_COMMAND("serve", "OpenAI-compatible server: adaptive thinking, KV-CoE confidence, KV embeddings", cmd_serve);
