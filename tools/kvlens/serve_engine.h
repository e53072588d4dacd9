// kvlens serve: what the HTTP side hands to the model side. A request becomes a Job; Engine::submit queues it and
// the engine answers with a stream of events on the job (deltas, then one Done or Error). This cut has one engine,
// SingleSlotEngine (one Session, one worker thread, a bounded FIFO); the batched engine of issue 14 (N sequences
// on one context) replaces it behind the same interface: submit(job) -> events.
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

#include "kvlens/session.h"
#include "kvlens/think.h"

namespace kvlens::serve {

using json = nlohmann::ordered_json;

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

    void post(Event e) {
        if (e.kind != Event::Delta) finished = true;
        {
            std::lock_guard<std::mutex> l(mu_);
            events_.push_back(std::move(e));
        }
        cv_.notify_all();
    }
    // The next event, or nullopt after `wait` without one.
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
    virtual int slots() const = 0;
    // Finish the running and queued jobs, then stop the workers.
    virtual void shutdown() = 0;
};

}  // namespace kvlens::serve
