// run_sequences: sequential programs written against Sequence run alone on a Session (-np 1) or batched on an
// Engine (-np N) with the same results. The embedded reasoner, f32 cache: ten programs that prefill, generate,
// rewind into their own answer, append control text and generate again give the same tokens and the same tapped
// K/V rows (f32 rounding: 1e-6 at layer 0, 1e-4 at the last) at -np 1 and -np 4; done() comes in program order; a program's error, a sequence out of its
// share of the context, and a bad token end the run with that error (no hang, no crash). Then the CLI: `think
// --table` and `probe prep` on 100 held-out problems write identical records at -np 1, 4 and 8 (timings aside),
// and a think run resumed at another -np completes the same file — with an f32 cache and no flash attention. (With
// the default f16 cache, CPU flash attention rounds differently by cell placement: greedy answers then flipped at
// near-ties on 3 of 100 prep problems.) Real numbers within 2e-3: see same(). One thread each (-t 1): ctest runs two
// tests at once, and two ggml thread pools spinning on 2 cores slow each other down by 10x and more.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kvlens/arith.h"
#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "kvlens/prompt.h"
#include "kvlens/sequence.h"
#include "kvlens/session.h"
#include "test_support.h"

using namespace kvlens;
using json = nlohmann::json;

namespace {

std::string reasoner() { return test::source_dir() + "/models/kvlens-reasoner.gguf"; }

SessionParams exact() {
    SessionParams sp;
    sp.n_ctx = 512;
    sp.n_threads = 1;  // one thread: ctest -j2 runs another ggml process beside it
    sp.flash_attn = "off";
    sp.cache_type_k = sp.cache_type_v = "f32";
    return sp;
}

struct Out {
    std::vector<Token> tokens;           // every sampled token, in order
    std::vector<std::vector<float>> kv;  // K then V row of every position at the end, layer 0 and the last layer
    int n_past = 0;
};

// prefill, generate, rewind to the middle of the answer, append "</think>\n\n", generate again
void program(const Model & m, const PromptFormat & pf, int i, Sequence & s, Out & out) {
    const int n_layer = m.facts().n_layer;
    KvStore store({0, n_layer - 1}, m.facts().kv_row());
    s.subscribe(&store);
    ArithProblem p = arith_generate(1 + i % 5, kArithEvalSeedBit | (uint64_t) (100 + i));
    s.eval(pf.tokens(m, p.question, PromptMode::Slow));
    const int n_prompt = s.n_past();
    GenerateResult g = s.generate(12 + 5 * (i % 4));
    out.tokens = g.tokens;
    s.rewind(n_prompt + (int) g.tokens.size() / 2);
    s.append_text(pf.to_fast);
    GenerateResult g2 = s.generate(8 + i % 3);
    out.tokens.insert(out.tokens.end(), g2.tokens.begin(), g2.tokens.end());
    out.n_past = s.n_past();
    for (int sl = 0; sl < 2; ++sl)
        for (int pos = 0; pos < store.n_pos(sl); ++pos) {
            out.kv.emplace_back(store.k(sl, pos), store.k(sl, pos) + store.row_size());
            out.kv.emplace_back(store.v(sl, pos), store.v(sl, pos) + store.row_size());
        }
    s.unsubscribe(&store);
}

std::vector<Out> run_all(std::shared_ptr<Model> m, int np, int n, std::vector<int> * order = nullptr) {
    const PromptFormat pf = prompt_format(*m, "auto");
    EngineParams ep;
    ep.session = exact();
    ep.session.n_ctx = 512 * np;
    ep.n_parallel = np;
    SamplingParams greedy;
    greedy.temp = 0;
    TapSpec tap;
    tap.layers = {0, m->facts().n_layer - 1};
    std::vector<Out> outs(n);
    run_sequences(m, ep, greedy, tap, n, [&](int i, Sequence & s) { program(*m, pf, i, s, outs[i]); },
                  [&](int i) {
                      if (order) order->push_back(i);
                  });
    return outs;
}

}  // namespace

TEST(Sequences, BatchedProgramsEqualSessionPrograms) {
    KVLENS_REQUIRE_FILE(reasoner());
    auto m = Model::load({reasoner()});
    std::vector<int> order;
    const auto alone = run_all(m, 1, 10);
    const auto batched = run_all(m, 4, 10, &order);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(order[i], i);
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(alone[i].tokens, batched[i].tokens) << "program " << i;
        EXPECT_EQ(alone[i].n_past, batched[i].n_past) << "program " << i;
        ASSERT_EQ(alone[i].kv.size(), batched[i].kv.size()) << "program " << i;
        ASSERT_GT(alone[i].kv.size(), 0u);
        double worst = 0, worst0 = 0;  // per row: largest difference over largest value (as the engine's own test)
        for (size_t r = 0; r < alone[i].kv.size(); ++r) {
            if (r == alone[i].kv.size() / 2) worst0 = worst;  // the first half: layer 0
            double num = 0, den = 0;
            for (size_t j = 0; j < alone[i].kv[r].size(); ++j) {
                num = std::max(num, (double) std::fabs(alone[i].kv[r][j] - batched[i].kv[r][j]));
                den = std::max(den, (double) std::fabs(alone[i].kv[r][j]));
            }
            worst = std::max(worst, num / std::max(den, 1e-12));
        }
        // f32 rounding only: ggml picks its matmul kernel by batch size, so a token evaluated beside other
        // sequences' tokens rounds differently — ~1e-7 at layer 0, up to ~3e-5 at the last of 6 layers
        EXPECT_LT(worst0, 1e-6) << "program " << i << " layer 0";
        EXPECT_LT(worst, 1e-4) << "program " << i << " last layer";
    }
}

TEST(Sequences, ErrorsEndTheRunWithTheirMessage) {
    KVLENS_REQUIRE_FILE(reasoner());
    auto m = Model::load({reasoner()});
    const PromptFormat pf = prompt_format(*m, "auto");
    EngineParams ep;
    ep.session = exact();
    ep.session.n_ctx = 256 * 4;
    ep.n_parallel = 4;
    SamplingParams greedy;
    greedy.temp = 0;
    auto q = [&](int i) { return pf.tokens(*m, arith_generate(2, kArithEvalSeedBit | (uint64_t) i).question, PromptMode::Slow); };
    // program 5 throws mid-run while others decode
    try {
        run_sequences(m, ep, greedy, {}, 12, [&](int i, Sequence & s) {
            s.eval(q(i));
            s.generate(10);
            if (i == 5) throw Error("program five failed");
            s.generate(10);
        });
        ADD_FAILURE() << "no error";
    } catch (const Error & e) {
        EXPECT_STREQ(e.what(), "program five failed");
    }
    // a program that outgrows its share of the context (256 tokens) gets the error, and so does the run
    try {
        run_sequences(m, ep, greedy, {}, 3, [&](int i, Sequence & s) {
            s.eval(q(i));
            std::vector<Token> more(300, q(i)[1]);
            s.eval(more);
        });
        ADD_FAILURE() << "no error";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("context full"), std::string::npos) << e.what();
    }
    // a token outside the vocabulary
    EXPECT_THROW(run_sequences(m, ep, greedy, {}, 2, [&](int, Sequence & s) { s.eval({1, 999999}); }), Error);
    // sampling before anything was evaluated
    EXPECT_THROW(run_sequences(m, ep, greedy, {}, 2, [&](int, Sequence & s) { s.sample(); }), Error);
    // a program that does nothing, and one asking for a layer the tap lacks
    EXPECT_NO_THROW(run_sequences(m, ep, greedy, {}, 3, [&](int, Sequence &) {}));
    TapSpec t1;
    t1.layers = {1};
    EXPECT_THROW(run_sequences(m, ep, greedy, {}, 2, [&](int, Sequence & s) { s.require_tap(t1); }), Error);
    // the engine is still usable after each failure: a clean run
    std::vector<int> order;
    run_sequences(m, ep, greedy, {}, 6, [&](int i, Sequence & s) { s.eval(q(i)); s.generate(5); },
                  [&](int i) { order.push_back(i); });
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

// ---- the CLI: records do not depend on -np ----------------------------------------------------------------

namespace {

// every line of a JSONL file, without the fields that are timings
std::vector<json> records(const std::string & path) {
    std::vector<json> v;
    std::ifstream in(path);
    std::string line;
    std::function<void(json &)> strip = [&](json & j) {
        if (!j.is_object()) return;
        for (auto it = j.begin(); it != j.end();) {
            if (it.key().find("seconds") != std::string::npos) it = j.erase(it);
            else {
                strip(*it);
                ++it;
            }
        }
    };
    while (std::getline(in, line)) {
        json j = json::parse(line);
        strip(j);
        v.push_back(j);
    }
    return v;
}

// Equal records: every string, integer, flag and token exactly; real numbers (scores, confidences) within 2e-3
// relative, feature vectors within 2e-3 of their largest value (measured: <= 3e-4, growing along a trace) — the default f16 cache with CPU flash attention accumulates V in f16, and where a sequence's cells
// sit in the unified cache changes the rounding (f32 and no flash attention: ~1e-5).
bool same(const json & a, const json & b, std::string & where) {
    if (a.is_number_float() || b.is_number_float()) {
        if (!a.is_number() || !b.is_number()) return false;
        const double x = a.get<double>(), y = b.get<double>();
        return std::fabs(x - y) <= 2e-3 * std::max(1.0, std::fabs(x));
    }
    if (a.type() != b.type()) return false;
    if (a.is_object()) {
        if (a.size() != b.size()) return false;
        for (auto it = a.begin(); it != a.end(); ++it) {
            if (!b.contains(it.key()) || !same(it.value(), b.at(it.key()), where)) {
                where = it.key() + (where.empty() ? "" : "." + where);
                return false;
            }
        }
        return true;
    }
    if (a.is_array()) {
        if (a.size() != b.size()) return false;
        if (!a.empty() && a[0].is_number_float()) {  // a feature vector: its largest difference over its largest value
            double num = 0, den = 0;
            for (size_t i = 0; i < a.size(); ++i) {
                if (!a[i].is_number() || !b[i].is_number()) return false;
                num = std::max(num, std::fabs(a[i].get<double>() - b[i].get<double>()));
                den = std::max(den, std::fabs(a[i].get<double>()));
            }
            return num <= 2e-3 * std::max(den, 1e-12);
        }
        for (size_t i = 0; i < a.size(); ++i)
            if (!same(a[i], b[i], where)) return false;
        return true;
    }
    return a == b;
}

// Table 3 as printed: every line equal (means of counts, accuracies, decisions), but an AUROC line may move by one
// pair's flip (< 0.0025 here): its scores are floats that agree within the records' 2e-3, so two answers whose
// KV-CoE C nearly tie can swap order at another -np (per-sequence caches split a decode into other ubatches,
// and ggml picks its matmul kernel by batch size).
void expect_same_table(const std::string & got, const std::string & want, int np) {
    std::istringstream g(got), w(want);
    std::string lg, lw;
    int n = 0;
    while (std::getline(w, lw)) {
        ++n;
        ASSERT_TRUE((bool) std::getline(g, lg)) << "-np " << np << ": the table ends at line " << n << ":\n" << got;
        const size_t colon = lw.rfind(": ");
        if (lw.find("AUROC") != std::string::npos && colon != std::string::npos && lg.size() > colon &&
            lg.compare(0, colon, lw, 0, colon) == 0) {
            EXPECT_NEAR(std::stod(lg.substr(colon + 2)), std::stod(lw.substr(colon + 2)), 0.0025) << "-np " << np << ": " << lg;
            continue;
        }
        EXPECT_EQ(lg, lw) << "the printed Table 3 differs at -np " << np << ", line " << n;
    }
    EXPECT_FALSE((bool) std::getline(g, lg)) << "-np " << np << ": extra lines";
}

void expect_same(const std::vector<json> & a, const std::vector<json> & b, const char * what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
        std::string where;
        EXPECT_TRUE(same(a[i], b[i], where)) << what << " record " << i << " differs at " << where << ":\n"
                                             << a[i].dump() << "\n" << b[i].dump();
    }
}

}  // namespace

TEST(Sequences, ThinkTableRecordsDoNotDependOnNp) {
    KVLENS_REQUIRE_FILE(reasoner());
    const std::string clf = test::source_dir() + "/models/kvlens-reasoner.classifier.gguf";
    KVLENS_REQUIRE_FILE(clf);
    test::TempDir d;
    std::vector<std::vector<json>> recs;
    std::string table1;
    for (int np : {1, 4, 8}) {
        const std::string out = d.path + "/t" + std::to_string(np) + ".jsonl";
        std::string log;
        // the table on stdout only (stderr has the progress lines)
        const int rc = test::run("(" + test::kvlens_bin() + " think -m " + reasoner() + " --classifier " + clf +
                                     " --arith 100 --table -t 1 -ctk f32 -ctv f32 -fa off -np " + std::to_string(np) + " -o " + out + " 2>/dev/null)",
                                 &log);
        ASSERT_EQ(rc, 0) << log;
        if (np == 1) table1 = log;
        else expect_same_table(log, table1, np);
        recs.push_back(records(out));
    }
    ASSERT_EQ(recs[0].size(), 100u);
    expect_same(recs[0], recs[1], "-np 4");
    expect_same(recs[0], recs[2], "-np 8");
    // resume: the first 90 records of the -np 1 run kept, the rest run at -np 8
    const std::string part = d.path + "/part.jsonl";
    {
        std::ifstream in(d.path + "/t1.jsonl");
        std::ofstream o(part);
        std::string line;
        for (int i = 0; i < 90 && std::getline(in, line); ++i) o << line << "\n";
    }
    std::string log;
    ASSERT_EQ(test::run(test::kvlens_bin() + " think -m " + reasoner() + " --classifier " + clf +
                            " --arith 100 --table -t 1 -ctk f32 -ctv f32 -fa off -np 8 -o " + part, &log), 0) << log;
    EXPECT_NE(log.find("90 problems already in"), std::string::npos) << log;
    expect_same(recs[0], records(part), "resumed at -np 8");
}

TEST(Sequences, ProbePrepRecordsDoNotDependOnNp) {
    KVLENS_REQUIRE_FILE(reasoner());
    test::TempDir d;
    std::vector<std::vector<json>> recs;
    for (int np : {1, 4, 8}) {
        const std::string out = d.path + "/p" + std::to_string(np) + ".jsonl";
        std::string log;
        const int rc = test::run(test::kvlens_bin() + " probe prep -m " + reasoner() +
                                     " --arith 100 --switch-aware --max-cuts 4 -t 1 -ctk f32 -ctv f32 -fa off -np " + std::to_string(np) + " -o " +
                                     out + " 2>&1",
                                 &log);
        ASSERT_EQ(rc, 0) << log;
        recs.push_back(records(out));
    }
    ASSERT_EQ(recs[0].size(), 101u);  // the meta line and 100 problems
    expect_same(recs[0], recs[1], "-np 4");
    expect_same(recs[0], recs[2], "-np 8");
}
