// kvlens serve's model side: requests as programs on the -np sequences of one SequencePool (serve_engine.h).
//
// One worker thread runs the pool. Whenever a sequence is free the pool asks next(): the oldest waiting job
// becomes a program — a chat runs ThinkRunner on its sequence (the same code as `kvlens think`), a completion
// evaluates its prompt and generates — and joins the running ones at the next decode. Embedding jobs run on
// the worker between decodes (their own batched context, serve_engine.h's Embedder), so two ggml thread pools
// never compete for the cores. Every job ends with exactly one Done or Error event, whatever happens.
#include <cmath>
#include <cstdio>
#include <sstream>
#include <thread>

#include "kvlens/error.h"
#include "serve_engine.h"
#include "serve_text.h"

namespace kvlens::serve {

using Clock = std::chrono::steady_clock;

std::string Metrics::text(int queue_depth, int running, long decodes, long batch_tokens) {
    std::ostringstream o;
    o << "# HELP kvlens_requests_total HTTP requests by status.\n# TYPE kvlens_requests_total counter\n";
    {
        std::lock_guard<std::mutex> l(mu);
        for (auto & [st, n] : by_status) o << "kvlens_requests_total{status=\"" << st << "\"} " << n << "\n";
    }
    auto counter = [&](const char * name, const char * help, long long v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
    };
    auto gauge = [&](const char * name, const char * help, double v) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << " " << v << "\n";
    };
    counter("kvlens_prompt_tokens_total", "Prompt tokens prefilled.", prompt_tokens);
    counter("kvlens_tokens_generated_total", "Tokens sampled (completion tokens).", tokens);
    counter("kvlens_thinking_tokens_total", "Sampled tokens inside a think block.", thinking);
    counter("kvlens_switches_total", "Online fast/slow switches.", switches);
    counter("kvlens_cancelled_total", "Generations cancelled by a client that went away.", cancelled);
    counter("kvlens_decode_calls_total", "llama_decode calls (each carries every decoding sequence's next token).", decodes);
    counter("kvlens_batch_tokens_total", "Tokens those calls evaluated, all sequences together.", batch_tokens);
    gauge("kvlens_queue_depth", "Requests waiting for a sequence.", queue_depth);
    gauge("kvlens_requests_processing", "Requests on a sequence.", running);
    const double s = decode_us / 1e6;
    gauge("kvlens_decode_tokens_per_second", "Generated tokens per second of each request's generation time, summed over requests.",
          s > 0 ? tokens / s : 0.0);
    return o.str();
}

namespace {

json usage(int prompt, int completion, int reasoning) {
    return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion},
            {"completion_tokens_details", {{"reasoning_tokens", reasoning}}}};
}

void post_error(Job & job, int status, const std::string & type, const std::string & msg) {
    job.post({Event::Error, "", "", {{"status", status}, {"type", type}, {"message", msg}}});
}

class BatchedEngine final : public Engine {
public:
    BatchedEngine(const ServeConfig & c, Metrics & m) : c_(c), m_(m) {
        ThinkParams tp = c_.think;
        if (c_.clf) tp.policy = ThinkPolicyKind::Classifier;  // the tap covers every policy a request may pick
        pool_ = std::make_unique<SequencePool>(c_.model, c_.engine, ThinkRunner::tap_spec(c_.model->facts(), c_.clf, tp));
        worker_ = std::thread([this] { loop(); });
    }
    ~BatchedEngine() override { shutdown(); }

    bool submit(std::shared_ptr<Job> job) override {
        std::lock_guard<std::mutex> l(mu_);
        if (stopping_ || (int) queue_.size() + running_locked() >= slots() + c_.queue_max) return false;
        queue_.push_back(std::move(job));
        cv_.notify_one();
        return true;
    }
    int queue_depth() const override {
        std::lock_guard<std::mutex> l(mu_);
        return (int) queue_.size();
    }
    int running() const override {
        std::lock_guard<std::mutex> l(mu_);
        return running_locked();
    }
    int slots() const override { return pool_->n_parallel(); }
    int n_ctx() const override { return pool_->n_ctx_seq(); }
    long decodes() const override { return pool_->engine().total_decodes(); }
    long batch_tokens() const override { return pool_->engine().total_tokens(); }
    void shutdown() override {
        {
            std::lock_guard<std::mutex> l(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

private:
    // jobs taken off the queue whose answer is not posted yet (a posted one no longer holds its sequence)
    int running_locked() const {
        int n = 0;
        for (auto & w : running_)
            if (auto j = w.lock(); j && !j->finished) ++n;
        return n;
    }

    void loop() {
        for (;;) {
            try {
                pool_->run([this](bool idle) { return next(idle); });
                return;  // stopping, and every job is done
            } catch (const std::exception & e) {
                // an engine error (every live program was unwound; their jobs got an error): go on with the rest
                std::fprintf(stderr, "serve: engine error: %s\n", e.what());
            }
        }
    }

    // The next waiting job as a program (embeddings are answered here, on the worker). idle: no sequence runs,
    // so wait for work; nullopt then ends the pool's run (only when stopping).
    std::optional<SequenceProgram> next(bool idle) {
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> l(mu_);
                running_.erase(std::remove_if(running_.begin(), running_.end(), [](auto & w) {
                                   auto j = w.lock();
                                   return !j || j->finished;
                               }),
                               running_.end());
                if (idle) cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return std::nullopt;
                job = queue_.front();
                queue_.pop_front();
                running_.push_back(job);
            }
            if (job->cancelled) {  // its client went away while it waited
                ++m_.cancelled;
                job->finished = true;
                continue;
            }
            if (job->kind == Job::Embed) {
                guarded(*job, [&] { embed(*job); });
                continue;
            }
            return SequenceProgram{job->sampling, [this, job](Sequence & s) {
                                       guarded(*job, [&] {
                                           if (job->kind == Job::Chat) chat(*job, s);
                                           else completion(*job, s);
                                       });
                                   }};
        }
    }

    // Runs fn; an exception becomes the job's error event. A job left without its last event (its program was
    // unwound by an engine error elsewhere) gets one on the way out.
    template <class F>
    void guarded(Job & job, F && fn) {
        struct Last {
            Job & j;
            ~Last() {
                if (!j.finished) post_error(j, 500, "server_error", "the generation was interrupted by an engine error");
            }
        } last{job};
        try {
            fn();
        } catch (const ApiError & e) {
            post_error(job, e.status, e.type, e.what());
        } catch (const Error & e) {  // kvlens's own checks of the input (tokenization, context room)
            post_error(job, 400, "invalid_request_error", e.what());
        } catch (const std::exception & e) {
            post_error(job, 500, "server_error", e.what());
        }
    }

    void delay() const {
        if (c_.token_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(c_.token_delay_ms));
    }

    void chat(Job & job, Sequence & s) {
        ThinkParams p = c_.think;
        p.policy = job.policy;
        ThinkParams base = c_.think;
        if (!c_.clf) base.policy = ThinkPolicyKind::AlwaysSlow;
        ThinkRunner runner(s, c_.clf, c_.fmt, base);
        StopMatcher stop(job.stop);
        ReasoningSplitter split(c_.fmt.think_open, c_.fmt.think_close);
        int reasoning_tokens = 0;
        bool length = false;
        ThinkHooks h;
        h.maxprob = true;
        // reasoning_end (the control call) or the reasoning budget (llama-server's --reasoning-budget) closes the think
        if (job.reasoning_control || job.reasoning_budget >= 0)
            h.end_thinking = [&] {
                return job.end_thinking.load() || (job.reasoning_budget >= 0 && reasoning_tokens >= job.reasoning_budget);
            };
        h.end_message = job.budget_message;
        h.on_event = [&](const ThinkEvent & e) {
            std::string r, c;
            if (e.kind == ThinkEvent::Prefix) {
                split.push(e.text, &r, &c);
            } else if (e.kind == ThinkEvent::Control) {
                split.push(stop.flush(), &r, &c);
                const std::string & msg = job.budget_message;
                if (!msg.empty() && e.text.rfind(msg, 0) == 0) {  // the budget's message is part of the reasoning
                    split.push(msg, &r, &c);
                    split.control(e.text.substr(msg.size()), &r, &c);
                } else {
                    split.control(e.text, &r, &c);
                }
            } else {
                if (split.in_reasoning()) ++reasoning_tokens;
                if (!e.eog) split.push(stop.push(e.text), &r, &c);
            }
            if (!r.empty() || !c.empty()) job.post({Event::Delta, r, c, {}});
            if (e.kind == ThinkEvent::Token) delay();
            if (job.cancelled || stop.hit()) return false;
            if (job.max_tokens > 0 && e.generated >= job.max_tokens && !e.eog) {
                length = true;
                return false;
            }
            return true;
        };
        ThinkResult res = runner.run(job.input, h, p);
        std::string r, c;
        if (!stop.hit()) split.push(stop.flush(), &r, &c);
        split.finish(&r, &c);
        if (!r.empty() || !c.empty()) job.post({Event::Delta, r, c, {}});
        m_.tokens += res.generated;
        m_.thinking += reasoning_tokens;
        m_.switches += res.switched;
        m_.prompt_tokens += res.prompt_tokens;
        m_.decode_us += (long long) (res.seconds * 1e6);
        if (job.cancelled) {
            ++m_.cancelled;
            job.finished = true;
            return;
        }
        auto num = [](double x) { return std::isfinite(x) ? json(x) : json(nullptr); };
        json kv = {{"first_mode", to_string(res.first_mode)},
                   {"score", num(res.initial_score)},
                   {"gave_up", res.gave_up},
                   {"switched", res.switched},
                   {"switch_at", res.switched ? json(res.switch_at) : json(nullptr)},
                   {"switch_score", num(res.switch_score)},
                   {"final_mode", to_string(res.final_mode)},
                   {"reasoning_ended", res.ended_thinking},
                   {"confidence", {{"kv_coe_c", res.confidence ? json(*res.confidence) : json(nullptr)},
                                   {"maxprob", res.maxprob ? json(*res.maxprob) : json(nullptr)}}},
                   {"generated", res.generated},
                   {"control_tokens", res.control_tokens},
                   {"seconds", res.seconds}};
        const char * fin = stop.hit() ? "stop" : (length || res.hit_cap) ? "length" : "stop";
        job.post({Event::Done, "", "", {{"finish_reason", fin}, {"usage", usage(res.prompt_tokens, res.generated, reasoning_tokens)}, {"kvlens", kv}}});
    }

    void completion(Job & job, Sequence & s) {
        StopMatcher stop(job.stop);
        s.eval(job.prompt);
        const int room = s.n_ctx() - s.n_past();
        const int cap = job.max_tokens > 0 ? std::min(job.max_tokens, room) : room;
        double mp = 0;
        int n = 0;
        auto t0 = Clock::now();
        GenerateResult g = s.generate(cap, [&](const TokenEvent & e) {
            ++n;
            mp += e.maxprob;
            if (!c_.model->is_eog(e.id)) {
                std::string c = stop.push(e.piece);
                if (!c.empty()) job.post({Event::Delta, "", c, {}});
            }
            delay();
            return !job.cancelled && !stop.hit();
        });
        if (!stop.hit()) {
            std::string c = stop.flush();
            if (!c.empty()) job.post({Event::Delta, "", c, {}});
        }
        m_.tokens += n;
        m_.prompt_tokens += (long long) job.prompt.size();
        m_.decode_us += (long long) (std::chrono::duration<double>(Clock::now() - t0).count() * 1e6);
        if (job.cancelled) {
            ++m_.cancelled;
            job.finished = true;
            return;
        }
        const char * fin = stop.hit() || g.hit_eog ? "stop" : "length";
        json kv = {{"generated", n}, {"confidence", {{"maxprob", n ? json(mp / n) : json(nullptr)}}}};
        job.post({Event::Done, "", "", {{"finish_reason", fin}, {"usage", usage((int) job.prompt.size(), n, 0)}, {"kvlens", kv}}});
    }

    void embed(Job & job) {
        EmbedParams ep;
        try {
            ep.pool = PoolConfig::from_knobs("paper", job.pool_knobs);
        } catch (const Error & e) {
            throw bad_request(e.what());
        }
        ep.batch = c_.batch;
        const std::string key = ep.pool.describe();
        auto & emb = embedders_[key];
        if (!emb) emb = std::make_unique<Embedder>(c_.model, ep);
        int n_tok = 0;
        for (size_t i = 0; i < job.texts.size(); ++i) {
            try {
                n_tok += (int) emb->tokens(job.texts[i], (int) i + 1).size();
            } catch (const Error & e) {
                throw bad_request(e.what());
            }
        }
        EmbedRun r = emb->embed(job.texts);
        json rows = json::array();
        for (int i = 0; i < r.n_texts; ++i) rows.push_back(std::vector<float>(r.row(i), r.row(i) + r.dim));
        job.post({Event::Done, "", "", {{"rows", rows}, {"prompt_tokens", n_tok}, {"pooling", key}}});
    }

    ServeConfig c_;
    Metrics & m_;
    std::unique_ptr<SequencePool> pool_;
    std::map<std::string, std::unique_ptr<Embedder>> embedders_;  // by pooling (worker thread only)
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> queue_;
    std::vector<std::weak_ptr<Job>> running_;  // taken off the queue (under mu_)
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace

std::unique_ptr<Engine> make_engine(const ServeConfig & cfg, Metrics & m) { return std::make_unique<BatchedEngine>(cfg, m); }

}  // namespace kvlens::serve
