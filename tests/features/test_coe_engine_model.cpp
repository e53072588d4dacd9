// CoE samples on the batched engine equal CoeRunner's on a Session: the embedded reasoner, 12 held-out problems
// over -np 4 (joins and leaves mid-run), greedy, f32 cache: the same tokens, flags and caps, and every score
// within 1e-5. (With the default f16 cache and flash attention, scores differ by ~2e-4 relative: llama.cpp's CPU
// flash attention accumulates V in f16, and the unified cache interleaves the other sequences' cells.)
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kvlens/arith.h"
#include "kvlens/coe_run.h"
#include "kvlens/engine.h"
#include "kvlens/prompt.h"
#include "test_support.h"

using namespace kvlens;

namespace {
void expect_close(const std::optional<double> & a, const std::optional<double> & b, const char * what, int i) {
    ASSERT_EQ(a.has_value(), b.has_value()) << what << " " << i;
    if (a) EXPECT_NEAR(*a, *b, 1e-5 * std::max(1.0, std::fabs(*b))) << what << " " << i;
}
void expect_close(double a, double b, const char * what, int i) {
    EXPECT_NEAR(a, b, 1e-5 * std::max(1.0, std::fabs(b))) << what << " " << i;
}
void expect_close(const std::optional<CoeScores> & a, const std::optional<CoeScores> & b, const char * what, int i) {
    ASSERT_EQ(a.has_value(), b.has_value()) << what << " " << i;
    if (!a) return;
    expect_close(a->mag, b->mag, what, i);
    expect_close(a->ang, b->ang, what, i);
    expect_close(a->r, b->r, what, i);
    expect_close(a->c, b->c, what, i);
}
}  // namespace

TEST(CoeEngine, BatchedSamplesEqualSessionSamples) {
    const std::string path = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";
    KVLENS_REQUIRE_FILE(path);
    auto m = Model::load({path});
    const PromptFormat pf = prompt_format(*m, "auto");
    std::vector<std::vector<Token>> prompts;
    for (int i = 0; i < 12; ++i) {
        ArithProblem p = arith_generate(1 + i % 5, kArithEvalSeedBit | (uint64_t) i);
        prompts.push_back(pf.tokens(*m, p.question, PromptMode::Slow));
    }
    CoeRunOptions o;
    o.max_tokens = 128;
    SessionParams sp;
    sp.n_ctx = 256;
    sp.n_threads = 1;
    sp.flash_attn = "off";
    sp.cache_type_k = sp.cache_type_v = "f32";
    Session s(m, sp);
    CoeRunner runner(s, o);
    EngineParams ep;
    ep.session = sp;
    ep.session.n_ctx = 256 * 4;
    ep.n_parallel = 4;
    Engine e(m, ep);
    e.set_tap(coe_tap_spec(o, m->facts().n_layer));
    std::vector<std::unique_ptr<CoeJob>> jobs;
    std::vector<SeqJob *> list;
    for (auto & p : prompts) {
        jobs.push_back(std::make_unique<CoeJob>(*m, o, p, e.n_ctx_seq()));
        list.push_back(jobs.back().get());
    }
    EngineStats st = e.run(list);
    EXPECT_EQ(st.max_active, 4);
    for (size_t i = 0; i < prompts.size(); ++i) {
        const CoeSample a = runner.run(prompts[i]);
        ASSERT_TRUE(jobs[i]->finished());
        const CoeSample & b = jobs[i]->sample();
        EXPECT_EQ(b.tokens, a.tokens) << i;
        EXPECT_EQ(b.text, a.text) << i;
        EXPECT_EQ(b.hit_eog, a.hit_eog) << i;
        EXPECT_EQ(b.hit_cap, a.hit_cap) << i;
        EXPECT_EQ(b.cap, a.cap) << i;
        expect_close(b.maxprob, a.maxprob, "maxprob", (int) i);
        expect_close(b.perplexity, a.perplexity, "ppl", (int) i);
        expect_close(b.entropy, a.entropy, "entropy", (int) i);
        expect_close(b.kv_token, a.kv_token, "kv_token", (int) i);
        expect_close(b.kv_layer, a.kv_layer, "kv_layer", (int) i);
        expect_close(b.hidden, a.hidden, "hidden", (int) i);
        EXPECT_EQ(b.state_floats, a.state_floats) << i;
    }
}

// `kvlens coe -np 4` writes the records of `-np 1` in the same order (text, tokens, correctness equal; scores within
// 1e-5 with an f32 cache), and a -np 4 run resumes a -np 1 file.
TEST(CoeEngine, CliParallelRecordsEqualSequential) {
    const std::string model = std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";
    KVLENS_REQUIRE_FILE(model);
    test::TempDir d;
    const std::string bin = test::kvlens_bin(), data = d.path + "/a.jsonl";
    std::string out;
    ASSERT_EQ(test::run(bin + " arith -n 8 --seed 5 -o " + data, &out), 0) << out;
    const std::string base = bin + " coe -m " + model + " --data " + data + " --format arith -t 2 -ctk f32 -ctv f32 -fa off";
    ASSERT_EQ(test::run(base + " -o " + d.path + "/one.jsonl", &out), 0) << out;
    ASSERT_EQ(test::run(base + " -np 4 -o " + d.path + "/four.jsonl", &out), 0) << out;
    ASSERT_EQ(test::run(base + " --limit 3 -o " + d.path + "/resumed.jsonl", &out), 0) << out;
    ASSERT_EQ(test::run(base + " -np 4 -o " + d.path + "/resumed.jsonl", &out), 0) << out;
    EXPECT_NE(out.find("3 done already, 5 to run"), std::string::npos) << out;
    auto read = [](const std::string & p) {
        std::vector<nlohmann::json> r;
        std::ifstream in(p);
        for (std::string l; std::getline(in, l);) r.push_back(nlohmann::json::parse(l));
        return r;
    };
    const auto one = read(d.path + "/one.jsonl");
    ASSERT_EQ(one.size(), 8u);
    for (const char * other : {"/four.jsonl", "/resumed.jsonl"}) {
        const auto b = read(d.path + other);
        ASSERT_EQ(b.size(), one.size()) << other;
        for (size_t i = 0; i < one.size(); ++i)
            for (auto & [k, v] : one[i].items()) {
                if (k == "seconds") continue;
                const auto & w = b[i][k];
                if (v.is_number_float()) {
                    EXPECT_NEAR(w.get<double>(), v.get<double>(), 1e-5 * std::max(1.0, std::fabs(v.get<double>()))) << other << " " << i << " " << k;
                } else if (v.is_object() && !v.empty() && v.begin()->is_number()) {
                    for (auto & [kk, vv] : v.items())
                        EXPECT_NEAR(w[kk].get<double>(), vv.get<double>(), 1e-5 * std::max(1.0, std::fabs(vv.get<double>())))
                            << other << " " << i << " " << k << "." << kk;
                } else {
                    EXPECT_EQ(w, v) << other << " " << i << " " << k;
                }
            }
    }
}
