// Sequence: one token sequence and its KV cache, as a sequential program sees it — evaluate, sample, rewind.
//
// ThinkRunner, prep_question and other per-question programs are written against it, so the same code runs on
// a Session (a whole llama.cpp context, one sequence) or as one of -np sequences of an Engine (run_sequences
// below: each program on its own thread, handed the engine's turn at every decode, so they batch together).
//
//   run_sequences(model, {session, 8}, sampling, tap, items.size(),
//                 [&](int i, Sequence & s) { results[i] = answer(s, items[i]); },   // program i
//                 [&](int i) { write(results[i]); });                              // in order of i
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kvlens/model.h"
#include "kvlens/tap.h"

namespace kvlens {

struct SamplingParams;
struct EngineParams;

// Per generated token: the chosen id, its text, its position and the distribution it was drawn from.
struct TokenEvent {
    Token id;
    std::string piece;
    int pos;               // position of this token in the sequence
    const float * logits;  // n_vocab raw logits that produced it
    int n_vocab;
    // softmax statistics of `logits` (computed once, temperature 1)
    float logprob;    // log p(id)
    float maxprob;    // max_j p(j)
    float entropy;    // -sum p log2 p (bits)
};

struct GenerateResult {
    std::vector<Token> tokens;
    std::string text;
    bool hit_eog = false;    // stopped on an end-of-generation token (included in tokens)
    bool hit_cap = false;    // stopped at max_tokens
    bool hit_ctx = false;    // stopped because the context is full (the last token is in tokens, not evaluated)
    double seconds = 0;
};

// Softmax statistics of one distribution (temperature 1): p of the max, entropy in bits, log p of a token.
struct SoftmaxStats {
    float maxprob, entropy_bits, logprob_of;
    Token argmax = -1;  // the first maximum: the greedy token
    float max_logit = 0;
    double log_z = 0;   // log sum exp(logit - max_logit): logprob of token t = logits[t] - max_logit - log_z
};
// One vectorized pass over the vocabulary (of < 0: logprob_of is NaN).
SoftmaxStats softmax_stats(const float * logits, int n_vocab, Token of);

// Return false to stop generation after this token.
using TokenCallback = std::function<bool(const TokenEvent &)>;

class Sequence {
public:
    virtual ~Sequence() = default;
    virtual Model & model() const = 0;
    // Append tokens and evaluate them. Throws when they would not fit (n_ctx) or an id is out of the vocabulary.
    virtual void eval(const std::vector<Token> & tokens) = 0;
    // Sample the next token from the logits of the last evaluated token (does not evaluate it).
    virtual Token sample() = 0;
    // The logits the last sample() drew from (n_vocab floats), valid until the next eval.
    virtual const float * sampled_logits() const = 0;
    // Their softmax statistics for the sampled token t (an engine sequence has them already: no second pass).
    virtual SoftmaxStats sampled_stats(Token t) const;
    // Cut the sequence back to its first pos tokens; the subscribed taps are told at once.
    virtual void rewind(int pos) = 0;
    virtual int n_past() const = 0;
    virtual int n_ctx() const = 0;  // tokens this sequence may hold
    // Taps: the rows of this sequence only, in position order. require_tap: the tap must cover spec (a Session
    // sets it; an engine sequence checks that the engine's tap covers it).
    virtual void require_tap(const TapSpec & spec) = 0;
    virtual void subscribe(TapConsumer * c) = 0;
    virtual void unsubscribe(TapConsumer * c) = 0;

    void clear() { rewind(0); }
    // Tokenize text (special tokens parsed) and evaluate it: control text like "</think>\n\n".
    void append_text(const std::string & text);
    // Sample, report, evaluate until an end-of-generation token, max_tokens, or the end of the context (hit_ctx).
    // stop_at_eog = false keeps going through end-of-generation tokens (benchmarks: always max_tokens).
    GenerateResult generate(int max_tokens, const TokenCallback & cb = nullptr, bool stop_at_eog = true);
};

// Runs program(i, seq) for i in [0, n), each on a fresh sequence (its own sampler, seeded from `sampling`):
// with ep.n_parallel == 1 one after another on one Session (-c as given), else on an Engine of ep.n_parallel
// sequences (-c is the whole cache, split evenly), programs joining in order of i as sequences free up. done(i),
// if given, is called on the caller's thread in order of i once program i has returned (and every earlier one).
// A program's exception stops the run (every live program is unwound) and is rethrown.
void run_sequences(std::shared_ptr<Model> model, const EngineParams & ep, const SamplingParams & sampling,
                   const TapSpec & tap, int n, const std::function<void(int, Sequence &)> & program,
                   const std::function<void(int)> & done = nullptr);

}  // namespace kvlens
