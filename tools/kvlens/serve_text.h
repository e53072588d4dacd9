// kvlens serve: the assistant turn as the client sees it — stop strings and the reasoning/content split at the
// think tags, incremental (SSE deltas) and whole (the concatenation of the deltas, by construction).
// Header-only so tests/apps/test_serve_text.cpp can test it without the CLI.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

namespace kvlens::serve {

// Cuts generated text at the first stop string; holds back a tail that could still begin one.
class StopMatcher {
public:
    explicit StopMatcher(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {
        stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
    }
    // Returns the text now safe to emit; sets hit() when a stop string matched (text after it is dropped). The
    // cut is at the earliest place any stop string occurs in the whole text, however it arrives in pieces: a full
    // match waits while a longer stop string that would start before it may still complete (found by fuzz_serve_text).
    std::string push(const std::string & t) {
        if (hit_) return "";
        buf_ += t;
        return scan(false);
    }
    // The end of the text: what is held back, up to a stop string held back whole.
    std::string flush() {
        if (hit_) return "";
        return scan(true);
    }
    bool hit() const { return hit_; }

private:
    std::string scan(bool final) {
        size_t first = std::string::npos;  // the earliest full match
        for (auto & st : stops_) first = std::min(first, buf_.find(st));
        // the earliest start of a stop string that the text so far ends inside of (a proper prefix at the end)
        size_t pending = buf_.size();
        if (!final) {
            const size_t lim = std::min(first, buf_.size());
            for (size_t q = 0; q < lim && pending == buf_.size(); ++q)
                for (auto & st : stops_) {
                    const size_t n = buf_.size() - q;
                    if (n < st.size() && st.compare(0, n, buf_, q, n) == 0) {
                        pending = q;
                        break;
                    }
                }
        }
        if (first != std::string::npos && (pending == buf_.size() || pending >= first)) {
            hit_ = true;
            std::string out = buf_.substr(0, first);
            buf_.clear();
            return out;
        }
        std::string out = buf_.substr(0, pending);
        buf_.erase(0, pending);
        return out;
    }

    std::vector<std::string> stops_;
    std::string buf_;
    bool hit_ = false;
};

// Splits the assistant turn into reasoning (between a leading think opener and its closer) and content.
// Leading whitespace of each part is skipped and trailing whitespace is held back until more text follows, so
// the streamed deltas concatenate to the trimmed parts.
class ReasoningSplitter {
public:
    enum State { Start, Think, Content };
    ReasoningSplitter(std::string open = "<think>", std::string close = "</think>")
        : open_(std::move(open)), close_(std::move(close)) {}

    // Generated text. Appends the new visible text to *reasoning / *content.
    void push(const std::string & t, std::string * reasoning, std::string * content) {
        buf_ += t;
        for (;;) {
            if (state_ == Start) {
                size_t a = buf_.find_first_not_of(" \t\r\n");
                if (a == std::string::npos) return;  // only whitespace so far
                const size_t n = std::min(open_.size(), buf_.size() - a);
                if (buf_.compare(a, n, open_, 0, n) != 0) {
                    state_ = Content;
                    buf_.erase(0, a);
                    lead_ = false;
                    continue;
                }
                if (n < open_.size()) return;  // could still be the opener
                buf_.erase(0, a + open_.size());
                state_ = Think;
                lead_ = true;
                continue;
            }
            if (state_ == Think) {
                size_t c = buf_.find(close_);
                if (c != std::string::npos) {
                    emit(buf_.substr(0, c), reasoning);
                    pend_.clear();  // trailing whitespace of the reasoning: dropped
                    buf_.erase(0, c + close_.size());
                    state_ = Content;
                    lead_ = true;
                    continue;
                }
                size_t keep = partial(buf_, close_);
                emit(buf_.substr(0, buf_.size() - keep), reasoning);
                buf_.erase(0, buf_.size() - keep);
                return;
            }
            emit(buf_, content);
            buf_.clear();
            return;
        }
    }
    // Control text kvlens appended (a switch or reasoning_end): an opener starts reasoning, a closer ends it.
    void control(const std::string & t, std::string * reasoning, std::string * content) {
        if (t.find(close_) != std::string::npos) {
            if (state_ == Think) emit(buf_, reasoning);
            buf_.clear();
            pend_.clear();
            state_ = Content;
            lead_ = true;
        } else if (t.find(open_) != std::string::npos) {
            if (state_ == Content) emit(buf_, content);
            buf_.clear();
            pend_.clear();
            state_ = Think;
            lead_ = true;
        } else {
            push(t, reasoning, content);
        }
    }
    // End of generation: text still held back as a possible tag goes out; trailing whitespace does not.
    void finish(std::string * reasoning, std::string * content) {
        if (state_ == Start) {
            size_t a = buf_.find_first_not_of(" \t\r\n");
            if (a != std::string::npos) emit(buf_.substr(a), content);
        } else {
            emit(buf_, state_ == Think ? reasoning : content);
        }
        buf_.clear();
        pend_.clear();
    }
    bool in_reasoning() const { return state_ != Content; }
    State state() const { return state_; }

private:
    static size_t partial(const std::string & b, const std::string & tag) {
        for (size_t k = std::min(tag.size() - 1, b.size()); k > 0; --k)
            if (b.compare(b.size() - k, k, tag, 0, k) == 0) return k;
        return 0;
    }
    void emit(const std::string & t, std::string * out) {
        std::string s = t;
        if (lead_) {
            size_t a = s.find_first_not_of(" \t\r\n");
            if (a == std::string::npos) return;
            s.erase(0, a);
            lead_ = false;
        }
        if (s.empty()) return;
        size_t z = s.find_last_not_of(" \t\r\n");
        if (z == std::string::npos) {
            pend_ += s;
            return;
        }
        *out += pend_ + s.substr(0, z + 1);
        pend_ = s.substr(z + 1);
    }

    std::string open_, close_, buf_, pend_;
    State state_ = Start;
    bool lead_ = true;
};

}  // namespace kvlens::serve
