// The batched engine against single-sequence runs: random-weight llama, qwen2 and qwen3 on real vocabularies,
// f32 cache. Eight sequences of different prompt lengths over four slots (so they join and leave mid-run), a
// small -b (prompts arrive in chunks beside other sequences' decode tokens), one sequence rewinds while the
// others decode, each stops at its own cap. For every sequence: the greedy tokens equal the same sequence run
// alone on a Session, the tapped K/V rows and hidden states equal the alone run's within 1e-5 relative, every
// row arrives exactly once in position order, and llama_state_seq_get_data of that sequence equals its rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"
#include "kvlens/session.h"
#include "state_parse.h"
#include "test_support.h"

using namespace kvlens;

namespace {

struct Arch {
    const char * arch, * vocab;
};
void PrintTo(const Arch & a, std::ostream * os) { *os << a.arch; }
const Arch kArchs[] = {{"llama", "ggml-vocab-llama-bpe.gguf"}, {"qwen2", "ggml-vocab-qwen2.gguf"}, {"qwen3", "ggml-vocab-qwen2.gguf"}};

// Every row a sequence receives, keyed by (layer, pos); checks each arrives once, in order, per layer and kind.
struct Rows : TapConsumer {
    std::map<std::pair<int, int>, std::vector<float>> k, v, h;
    std::map<int, int> next_kv, next_h;  // next expected position per layer
    int dup = 0, out_of_order = 0;
    void on_kv(int l, int pos, const float * kk, const float * vv, int row) override {
        if (k.count({l, pos})) ++dup;
        if (next_kv.count(l) && pos != next_kv[l]) ++out_of_order;
        next_kv[l] = pos + 1;
        k[{l, pos}].assign(kk, kk + row);
        v[{l, pos}].assign(vv, vv + row);
    }
    void on_hidden(int l, int pos, const float * x, int n) override {
        if (h.count({l, pos})) ++dup;
        if (next_h.count(l) && pos < next_h[l]) ++out_of_order;
        next_h[l] = pos + 1;
        h[{l, pos}].assign(x, x + n);
    }
    void on_rewind(int pos) override {
        for (auto * m : {&k, &v, &h})
            for (auto it = m->begin(); it != m->end();) it = it->first.second >= pos ? m->erase(it) : std::next(it);
        for (auto & [l, p] : next_kv) p = std::min(p, pos);
        for (auto & [l, p] : next_h) p = std::min(p, pos);
    }
};

// One sequence's plan: prompt, cap, and optionally a rewind (after `rewind_at` generated tokens: back to
// prompt + 2, then the control token `ctl` is evaluated instead of the sampled one).
struct Plan {
    std::vector<Token> prompt;
    int cap = 8, rewind_at = -1;
    Token ctl = 0;
};

struct Job : SeqJob {
    Plan plan;
    Engine * eng = nullptr;
    int seq = -1, n = 0;
    std::vector<Token> out;
    Rows rows;
    std::vector<uint8_t> state;
    bool finished = false, by_context = false;
    std::vector<Token> prompt() override { return plan.prompt; }
    void on_join(int s) override { seq = s; }
    SeqStep on_token(const TokenEvent & ev) override {
        out.push_back(ev.id);
        ++n;
        if (eng->model().is_eog(ev.id)) return SeqStep::done();
        if (n == plan.rewind_at) {
            SeqStep st;
            st.keep_sampled = false;
            st.rewind_to = (int) plan.prompt.size() + 2;
            st.append = {plan.ctl};
            return st;
        }
        if (n == plan.cap) return SeqStep::finish_after_eval();
        return SeqStep::next();
    }
    void on_finish(bool context) override {
        finished = true;
        by_context = context;
        state = eng->state_data(seq);
    }
};

// The same plan on a Session, alone.
std::vector<Token> run_alone(std::shared_ptr<Model> m, const SessionParams & sp, const TapSpec & spec, const Plan & p, Rows & rows) {
    Session s(m, sp);
    s.set_tap(spec);
    s.subscribe(&rows);
    s.eval(p.prompt);
    std::vector<Token> out;
    for (int n = 1;; ++n) {
        Token t = s.sample();
        out.push_back(t);
        if (m->is_eog(t)) break;
        if (n == p.rewind_at) {
            s.rewind((int) p.prompt.size() + 2);
            s.eval({p.ctl});
            continue;
        }
        s.eval({t});
        if (n == p.cap) break;
    }
    return out;
}

double rel(const std::vector<float> & a, const std::vector<float> & b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i)
        num = std::max(num, (double) std::fabs(a[i] - b[i])), den = std::max(den, (double) std::fabs(b[i]));
    return num / std::max(den, 1e-12);
}

void expect_same_rows(const std::map<std::pair<int, int>, std::vector<float>> & got,
                      const std::map<std::pair<int, int>, std::vector<float>> & want, const char * what, int job) {
    ASSERT_EQ(got.size(), want.size()) << what << " rows, job " << job;
    for (auto & [key, w] : want) {
        auto it = got.find(key);
        ASSERT_NE(it, got.end()) << what << " layer " << key.first << " pos " << key.second << " job " << job;
        ASSERT_EQ(it->second.size(), w.size());
        EXPECT_LT(rel(it->second, w), 1e-5) << what << " layer " << key.first << " pos " << key.second << " job " << job;
    }
}

class EngineTest : public ::testing::TestWithParam<Arch> {
protected:
    void SetUp() override {
        const Arch & a = GetParam();
        vocab_ = test::llama_dir() + "/models/" + a.vocab;
        KVLENS_REQUIRE_FILE(vocab_);
        RandomModelSpec s;
        s.arch = a.arch;
        s.n_layer = 3, s.n_embd = 128, s.n_head = 4, s.n_head_kv = 2, s.head_dim = 32, s.n_ff = 192;
        s.vocab_gguf = vocab_;
        static test::TempDir dir;  // one model per architecture for the whole binary (a 151k vocab takes seconds)
        static std::map<std::string, std::shared_ptr<Model>> made;
        if (!made.count(a.arch)) {
            path_ = dir.path + "/" + a.arch + ".gguf";
            write_random_model(s, path_);
            made[a.arch] = Model::load({path_});
        }
        m_ = made[a.arch];
    }
    std::string vocab_, path_;
    std::shared_ptr<Model> m_;
};

}  // namespace

// hidden: the tap also reads hidden states (one unified cache); else K/V only (a cache per sequence, whose rows the
// engine maps to sequences by their cache row: several ubatches per decode).
void eight_sequences(const std::shared_ptr<Model> & m_, bool hidden) {
    SessionParams sp;
    sp.n_ctx = 1024;
    sp.n_batch = sp.n_ubatch = 16;
    sp.n_threads = 1;  // ctest -j2 runs another test beside it: two 2-thread ggml pools on 2 cores stall each other
    sp.flash_attn = "off";
    sp.cache_type_k = sp.cache_type_v = "f32";
    TapSpec spec;
    spec.layers = {0, 1, 2};
    spec.hidden = spec.hidden_embedding = hidden;

    const char * texts[8] = {"Hi", "The KV cache is a free representation.", "12 + 34 = 46, and 7 * 8 = 56.",
                             "Once upon a time", "A", "Adaptive thinking picks fast or slow up front and may switch once.",
                             "tokens", "Llamas and qwens"};
    std::vector<std::unique_ptr<Job>> jobs;
    for (int i = 0; i < 8; ++i) {
        auto j = std::make_unique<Job>();
        j->plan.prompt = m_->tokenize(texts[i], true);
        j->plan.cap = 3 + (i * 5) % 11;  // 3..13: sequences leave at different steps
        if (i == 2) {
            j->plan.rewind_at = 5, j->plan.cap = 12;
            j->plan.ctl = m_->tokenize(" and", false)[0];
        }
        j->consumers = {&j->rows};
        jobs.push_back(std::move(j));
    }
    EngineParams ep;
    ep.session = sp;
    ep.n_parallel = 4;
    Engine e(m_, ep);
    e.set_tap(spec);
    std::vector<SeqJob *> list;
    for (auto & j : jobs) {
        j->eng = &e;
        list.push_back(j.get());
    }
    EngineStats st = e.run(list);
    EXPECT_EQ(st.max_active, 4);
    EXPECT_GT(st.n_decodes, 13);

    SessionParams solo = sp;
    solo.n_ctx = e.n_ctx_seq();
    for (int i = 0; i < 8; ++i) {
        Job & j = *jobs[i];
        ASSERT_TRUE(j.finished) << i;
        EXPECT_FALSE(j.by_context) << i;
        Rows alone;
        EXPECT_EQ(j.out, run_alone(m_, solo, spec, j.plan, alone)) << "tokens, job " << i;
        EXPECT_EQ(j.rows.dup, 0) << i;
        EXPECT_EQ(j.rows.out_of_order, 0) << i;
        expect_same_rows(j.rows.k, alone.k, "K", i);
        expect_same_rows(j.rows.v, alone.v, "V", i);
        expect_same_rows(j.rows.h, alone.h, "hidden", i);
        // the cache of this sequence holds exactly its tapped rows
        test::SeqState ss;
        ASSERT_TRUE(test::parse_seq_state(j.state, ss)) << i;
        const int n_pos = (int) j.plan.prompt.size() + (int) j.out.size() - (j.plan.rewind_at > 0 ? 2 : 0) -
                          (m_->is_eog(j.out.back()) ? 1 : 0);
        EXPECT_EQ((int) ss.pos.size(), n_pos) << i;
        for (int l = 0; l < 3; ++l)
            for (size_t c = 0; c < ss.pos.size(); ++c) {
                auto it = j.rows.k.find({l, ss.pos[c]});
                ASSERT_NE(it, j.rows.k.end()) << "job " << i << " layer " << l << " pos " << ss.pos[c];
                EXPECT_EQ(0, std::memcmp(it->second.data(), ss.k[l].data() + c * ss.row, ss.row * 4));
                EXPECT_EQ(0, std::memcmp(j.rows.v[{l, ss.pos[c]}].data(), ss.v[l].data() + c * ss.row, ss.row * 4));
            }
        if (hidden) EXPECT_FALSE(j.rows.h.empty()) << i;
    }
}

TEST_P(EngineTest, EightSequencesEqualTheirSoloRuns) { eight_sequences(m_, true); }

TEST_P(EngineTest, EightSequencesOnPerSequenceCachesEqualTheirSoloRuns) { eight_sequences(m_, false); }

// reuse_prefix (kvlens serve's prompt caching): jobs without consumers join the slot whose cache holds the longest
// prefix of their prompt and evaluate only the rest; a job that taps starts empty and sees every row. Greedy tokens
// equal the solo runs either way (f32 cache), and the reused tokens are counted.
TEST_P(EngineTest, ReusedPromptPrefixesGiveTheSoloTokens) {
    SessionParams sp;
    sp.n_ctx = 1024;
    sp.n_batch = sp.n_ubatch = 16;
    sp.n_threads = 1;
    sp.flash_attn = "off";
    sp.cache_type_k = sp.cache_type_v = "f32";
    const std::vector<Token> a = m_->tokenize("The KV cache is a free representation.", true);
    std::vector<Token> a_more = a;
    for (Token t : m_->tokenize(" It is kept anyway.", false)) a_more.push_back(t);
    const std::vector<Token> b = m_->tokenize("Once upon a time", true);
    // the same cap everywhere, so each wave leaves together. Wave 1: a, b fill the two slots. Wave 2 (no consumers):
    // a + more finds all of a in slot 0, b all but its last token in slot 1. Wave 3: a finds all but its last
    // token in slot 0; b with a consumer starts empty in slot 1.
    std::vector<std::vector<Token>> prompts = {a, b, a_more, b, a, b};
    std::vector<std::unique_ptr<Job>> jobs;
    for (size_t i = 0; i < prompts.size(); ++i) {
        auto j = std::make_unique<Job>();
        j->plan.prompt = prompts[i];
        j->plan.cap = 6;
        if (i == 5) j->consumers = {&j->rows};
        jobs.push_back(std::move(j));
    }
    EngineParams ep;
    ep.session = sp;
    ep.n_parallel = 2;
    ep.reuse_prefix = true;
    Engine e(m_, ep);
    TapSpec spec;
    spec.layers = {0, 1, 2};
    e.set_tap(spec);
    std::vector<SeqJob *> list;
    for (auto & j : jobs) {
        j->eng = &e;
        list.push_back(j.get());
    }
    const EngineStats st = e.run(list);
    EXPECT_EQ(st.n_prompt_reused, (long) a.size() + (long) (b.size() - 1) + (long) (a.size() - 1));
    long total = 0;
    for (auto & p : prompts) total += (long) p.size();
    EXPECT_EQ(st.n_prompt_tokens + st.n_prompt_reused, total);
    SessionParams solo = sp;
    solo.n_ctx = e.n_ctx_seq();
    for (size_t i = 0; i < jobs.size(); ++i) {
        Rows alone;
        EXPECT_EQ(jobs[i]->out, run_alone(m_, solo, spec, jobs[i]->plan, alone)) << "tokens, job " << i;
        if (i == 5) {  // it tapped: every row of its prompt came, none reused
            expect_same_rows(jobs[i]->rows.k, alone.k, "K", (int) i);
            EXPECT_EQ(jobs[i]->rows.dup, 0);
        }
    }
    // off: nothing reused
    EngineParams off = ep;
    off.reuse_prefix = false;
    Engine e2(m_, off);
    for (auto & j : jobs) {
        j->out.clear();
        j->n = 0;
        j->rows = Rows{};
        j->eng = &e2;
    }
    const EngineStats st2 = e2.run(list);
    EXPECT_EQ(st2.n_prompt_reused, 0);
    EXPECT_EQ(st2.n_prompt_tokens, total);
}

TEST_P(EngineTest, ContextShareAndBadInput) {
    EngineParams ep;
    ep.session.n_ctx = 64;
    ep.session.n_threads = 1;
    ep.n_parallel = 0;
    EXPECT_THROW(Engine(m_, ep), Error);
    ep.n_parallel = 64;
    EXPECT_THROW(Engine(m_, ep), Error);  // 64 / 64 = 1 token per sequence
    ep.n_parallel = 4;
    Engine e(m_, ep);
    EXPECT_EQ(e.n_ctx_seq(), 16);
    Job big;
    big.eng = &e;
    big.plan.prompt.assign(16, m_->tokenize("a", false)[0]);
    EXPECT_THROW(e.run(std::vector<SeqJob *>{&big}), Error);  // leaves no room in its 16
    Job fits;
    fits.eng = &e;
    fits.plan.prompt.assign(10, m_->tokenize("a", false)[0]);
    fits.plan.cap = 100;
    e.run(std::vector<SeqJob *>{&fits});  // the engine is usable after the error
    EXPECT_TRUE(fits.finished);
    EXPECT_TRUE(fits.by_context);          // stopped at its share of the context, not at the cap
    EXPECT_EQ((int) fits.out.size(), 16 - 10 + 1);  // the last one sampled, not evaluated
}

INSTANTIATE_TEST_SUITE_P(Archs, EngineTest, ::testing::ValuesIn(kArchs), [](const auto & i) { return std::string(i.param.arch); });
