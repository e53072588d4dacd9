// kvlens serve: what the HTTP side hands to the model side. A request becomes a Job; Engine::submit queues it and
// the engine answers with a stream of events on the job (deltas, then one Done or Error). The engine
// (make_engine, serve_engine.cpp) runs each chat/completion as a program on one of -np sequences of a
// SequencePool (continuous batching on one llama.cpp context); a bounded FIFO holds what waits for a sequence.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvlens/embed.h"
#include "kvlens/engine.h"
#include "kvlens/prompt.h"
#include "kvlens/session.h"
#include "kvlens/think.h"

namespace kvlens::serve {

using json = nlohmann::ordered_json;

// An OpenAI-style error: status, type (llama-server's names) and message.
struct ApiError : std::runtime_error {
    int status;
    std::string type;
    ApiError(int st, std::string ty, const std::string & msg) : std::runtime_error(msg), status(st), type(std::move(ty)) {}
};
inline ApiError bad_request(const std::string & m) { return ApiError(400, "invalid_request_error", m); }

// GET /metrics: counters the engine and the HTTP side add to from any thread.
struct Metrics {
    std::mutex mu;
    std::map<int, long long> by_status;
    std::atomic<long long> tokens{0}, thinking{0}, switches{0}, prompt_tokens{0}, cancelled{0};
    std::atomic<long long> decode_us{0};  // summed over requests: time from first to last generated token
    void count(int status) {
        std::lock_guard<std::mutex> l(mu);
        ++by_status[status];
    }
    // Prometheus text format; decodes/batch_tokens: llama_decode calls and the tokens they carried (all sequences)
    std::string text(int queue_depth, int running, long decodes, long batch_tokens);
};

// What the engine needs from the command line.
struct ServeConfig {
    std::shared_ptr<Model> model;
    EngineParams engine;  // -np sequences, -c the whole cache (cli::engine_params)
    SamplingParams sampling;
    PromptFormat fmt;
    const KvClassifier * clf = nullptr;
    ThinkParams think;
    BatchParams batch;       // embeddings
    int queue_max = 64;      // waiting beyond the -np running
    int token_delay_ms = 0;  // testing: sleep after each generated token
};

struct Event {
    enum Kind { Delta, Done, Error } kind = Delta;
    std::string reasoning, content;  // Delta: new text of each part
    json result;                     // Done: the engine's summary (finish_reason, usage, kvlens); Error: {status, type, message}
};

// One validated request. Fields by kind; the HTTP side fills them, the engine only reads them.
struct Job {
    enum Kind { Chat, Completion, Embed } kind = Chat;
    std::string id;
    // Chat: the conversation rendered (ThinkInput) and the thinking policy
    ThinkInput input;
    ThinkPolicyKind policy = ThinkPolicyKind::AlwaysSlow;
    bool reasoning_control = false;
    int reasoning_budget = -1;       // thinking tokens before the think is closed (-1: no limit; 0: at once)
    std::string budget_message;      // written into the think before that close
    // Completion: the prompt's tokens
    std::vector<Token> prompt;
    // Chat + Completion
    SamplingParams sampling;
    int max_tokens = -1;  // -1: up to the mode caps / the context
    std::vector<std::string> stop;
    // Embed
    std::vector<std::string> texts;
    std::map<std::string, std::string> pool_knobs;

    // control (any thread)
    std::atomic<bool> cancelled{false};     // the client went away
    std::atomic<bool> end_thinking{false};  // POST /v1/chat/completions/control reasoning_end
    std::chrono::steady_clock::time_point queued_at = std::chrono::steady_clock::now();

    std::atomic<bool> finished{false};      // its last event (Done or Error) is posted: the slot counts as free
    bool wake_on_delta = true;  // false for a non-streamed answer: its reader wakes for the last event only

    void post(Event e) {
        const bool last = e.kind != Event::Delta;
        if (last) finished = true;
        {
            std::lock_guard<std::mutex> l(mu_);
            events_.push_back(std::move(e));
        }
        if (last || wake_on_delta) cv_.notify_all();  // a wake-up per token costs a context switch per token
    }
    // The next event, or nullopt after `wait` without one (set before submit; a reader that is not woken per delta
    // still finds the deltas queued when it wakes).
    std::optional<Event> next(std::chrono::milliseconds wait) {
        std::unique_lock<std::mutex> l(mu_);
        if (!cv_.wait_for(l, wait, [&] { return !events_.empty(); })) return std::nullopt;
        Event e = std::move(events_.front());
        events_.pop_front();
        return e;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
};

// The model side. submit never blocks: false when the queue is full (the HTTP side answers 503).
class Engine {
public:
    virtual ~Engine() = default;
    virtual bool submit(std::shared_ptr<Job> job) = 0;
    virtual int queue_depth() const = 0;  // waiting, not running
    virtual int running() const = 0;      // on a sequence, answer not yet posted
    virtual int slots() const = 0;
    virtual int n_ctx() const = 0;        // tokens one request may hold (-c / -np)
    virtual long decodes() const = 0;     // llama_decode calls so far
    virtual long batch_tokens() const = 0;  // tokens they evaluated
    // Finish the running and queued jobs, then stop the workers.
    virtual void shutdown() = 0;
};

// The batched engine: one worker thread owns a SequencePool of cfg.engine.n_parallel sequences.
std::unique_ptr<Engine> make_engine(const ServeConfig & cfg, Metrics & m);

}  // namespace kvlens::serve
