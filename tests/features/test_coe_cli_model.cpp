// kvlens coe / eval coe / arith through the CLI: records with every field, resume, the score table, the token cap
// rule (flagged, counted incorrect), chat-template modes on a random-weight qwen3, and bad input (one error line
// naming the file line or field). Small runs on stories260K (shared data) and a generated random qwen3.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kvlens/coe.h"
#include "kvlens/coe_run.h"
#include "kvlens/random_model.h"
#include "test_support.h"

using namespace kvlens;
using json = nlohmann::json;

namespace {

struct Outcome {
    int rc;
    std::string out;
};

Outcome run_cli(const std::string & args) {
    Outcome o;
    o.rc = test::run(test::kvlens_bin() + " " + args + " </dev/null", &o.out);
    return o;
}

void write_file(const std::string & path, const std::string & bytes) { std::ofstream(path, std::ios::binary) << bytes; }

using kvlens::test::slurp;

std::vector<json> read_jsonl(const std::string & path) {
    std::vector<json> out;
    std::istringstream in(slurp(path));
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) out.push_back(json::parse(line));
    return out;
}

void expect_one_clear_error(const Outcome & o, const std::string & needle) {
    kvlens::test::expect_one_clear_error(o.rc, o.out, needle);
}

void expect_record_fields(const json & r) {
    for (const char * f : {"id", "output", "extracted", "correct", "hit_cap", "hit_eog", "tokens", "prompt_tokens",
                           "seconds", "maxprob", "ppl", "entropy", "kv_token", "kv_layer", "hidden", "reference", "format", "mode"})
        EXPECT_TRUE(r.contains(f)) << "missing " << f << " in " << r.dump();
    for (const char * chain : {"kv_token", "kv_layer", "hidden"}) {
        const json & c = r[chain];
        if (c.is_null()) continue;
        for (const char * k : {"mag", "ang", "r", "c"}) EXPECT_TRUE(c[k].is_number()) << chain << "." << k;
    }
    EXPECT_TRUE(r["maxprob"].is_number());
    EXPECT_GT(r["ppl"].get<double>(), 0.0);
}

const std::string & stories() {
    static const std::string p = test::stories_gguf();
    return p;
}

// A hand-written records file with both classes: eval must print the whole table.
std::string two_class_records() {
    std::string s;
    for (int i = 0; i < 8; ++i) {
        const bool ok = i % 2 == 0;
        const double v = ok ? 0.8 + 0.01 * i : 0.2 + 0.01 * i;  // separates perfectly
        json chain = {{"mag", v}, {"ang", 1 - v}, {"r", 2 * v - 1}, {"c", v}};
        json r = {{"id", std::to_string(i)}, {"level", i < 4 ? 1 : 2}, {"output", "x"}, {"correct", ok}, {"hit_cap", !ok && i == 7}, {"tokens", 10},
                  {"maxprob", v}, {"ppl", 1 / v}, {"entropy", 1 - v}, {"kv_token", chain},
                  {"kv_layer", i == 3 ? json(nullptr) : chain}, {"hidden", chain}};
        s += r.dump() + "\n";
    }
    return s;
}

}  // namespace

TEST(CoeCli, ArithWritesLoadableHeldOutProblems) {
    test::TempDir d;
    auto o = run_cli("arith -n 10 --seed 7 --levels 2,4 -o " + d.path + "/a.jsonl");
    ASSERT_EQ(o.rc, 0) << o.out;
    auto rows = read_jsonl(d.path + "/a.jsonl");
    ASSERT_EQ(rows.size(), 10u);
    for (size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i]["level"].get<int>(), i % 2 ? 4 : 2);
        EXPECT_TRUE(rows[i]["question"].is_string());
        EXPECT_TRUE(rows[i]["answer"].is_string());
        EXPECT_EQ(std::stoull(rows[i]["seed"].get<std::string>()) >> 63, 1u);  // kArithEvalSeedBit: held out
    }
    auto o2 = run_cli("arith -n 10 --seed 8 --levels 2,4 -o " + d.path + "/b.jsonl");
    ASSERT_EQ(o2.rc, 0);
    EXPECT_NE(slurp(d.path + "/a.jsonl"), slurp(d.path + "/b.jsonl"));
    expect_one_clear_error(run_cli("arith -n 3 --levels 0-6 -o " + d.path + "/c.jsonl"), "--levels");
}

TEST(CoeCli, RecordsResumeAndTable) {
    KVLENS_REQUIRE_FILE(stories());
    test::TempDir d;
    const std::string data6 = d.path + "/a6.jsonl", data4 = d.path + "/a4.jsonl", out = d.path + "/r.jsonl";
    ASSERT_EQ(run_cli("arith -n 6 --seed 3 -o " + data6).rc, 0);
    ASSERT_EQ(run_cli("arith -n 4 --seed 3 -o " + data4).rc, 0);  // the first 4 rows of the same set

    auto o = run_cli("coe -m " + stories() + " --data " + data4 + " --format arith -o " + out + " -n 12 -t 1");
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("samples/s"), std::string::npos) << o.out;  // progress
    auto recs = read_jsonl(out);
    ASSERT_EQ(recs.size(), 4u);
    for (auto & r : recs) {
        expect_record_fields(r);
        EXPECT_TRUE(r["hit_cap"].get<bool>());  // stories260K never stops in 12 tokens
        EXPECT_FALSE(r["correct"].get<bool>());
        EXPECT_EQ(r["tokens"].get<int>(), 12);
        EXPECT_TRUE(r["kv_token"].is_object());
        EXPECT_TRUE(r["hidden"].is_object());
    }
    const std::string first4 = slurp(out);

    // resume: the 4 done ids are skipped, 2 appended; a torn last line (killed mid-write) is dropped and redone
    auto o2 = run_cli("coe -m " + stories() + " --data " + data6 + " --format arith -o " + out + " -n 12 -t 1");
    ASSERT_EQ(o2.rc, 0) << o2.out;
    EXPECT_NE(o2.out.find("4 done already, 2 to run"), std::string::npos) << o2.out;
    EXPECT_EQ(slurp(out).substr(0, first4.size()), first4);
    EXPECT_EQ(read_jsonl(out).size(), 6u);
    std::string all = slurp(out);
    write_file(out, all.substr(0, all.size() - 20));
    auto o3 = run_cli("coe -m " + stories() + " --data " + data6 + " --format arith -o " + out + " -n 12 -t 1");
    ASSERT_EQ(o3.rc, 0) << o3.out;
    EXPECT_NE(o3.out.find("5 done already, 1 to run"), std::string::npos) << o3.out;
    EXPECT_EQ(read_jsonl(out).size(), 6u);

    // eval on these records: one class only, the table is still printed
    auto e = run_cli("eval coe " + out);
    ASSERT_EQ(e.rc, 0) << e.out;
    EXPECT_NE(e.out.find("accuracy: 0.00%"), std::string::npos) << e.out;
    EXPECT_NE(e.out.find("hit the token cap: 6"), std::string::npos) << e.out;
    EXPECT_NE(e.out.find("| KV-CoE token R |"), std::string::npos) << e.out;
}

TEST(CoeCli, CapIsFlaggedAndCountedIncorrect) {
    KVLENS_REQUIRE_FILE(stories());
    test::TempDir d;
    // stories260K's greedy continuation of this TheoremQA bool prompt says "yes" within 100 tokens, so the checker
    // finds the right answer — but the generation hits the cap, so the record is flagged and incorrect.
    write_file(d.path + "/t.jsonl", R"({"id":"q1","en":"Lily said yes.","answer":"True","answer_type":"bool"})" "\n");
    auto o = run_cli("coe -m " + stories() + " --data " + d.path + "/t.jsonl --format theoremqa -o " + d.path + "/r.jsonl -n 100 -t 1");
    ASSERT_EQ(o.rc, 0) << o.out;
    auto recs = read_jsonl(d.path + "/r.jsonl");
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0]["extracted"], "True");
    EXPECT_TRUE(recs[0]["hit_cap"].get<bool>());
    EXPECT_FALSE(recs[0]["correct"].get<bool>());
    auto e = run_cli("eval coe " + d.path + "/r.jsonl");
    EXPECT_NE(e.out.find("hit the token cap: 1 (counted incorrect)"), std::string::npos) << e.out;
}

TEST(CoeCli, EvalTablePlotAndNulls) {
    test::TempDir d;
    write_file(d.path + "/r.jsonl", two_class_records());
    auto e = run_cli("eval coe " + d.path + "/r.jsonl --plot " + d.path + "/roc.svg --json " + d.path + "/e.json");
    ASSERT_EQ(e.rc, 0) << e.out;
    EXPECT_NE(e.out.find("accuracy: 50.00%"), std::string::npos) << e.out;
    for (const char * row : {"| Maxprob | 100.00 | 0.00 | 100.00 | 0 |", "| 1/Perplexity | 100.00 |", "| 1/Entropy | 100.00 |",
                             "| KV-CoE token Mag | 100.00 |", "| KV-CoE token Ang | 0.00 |", "| KV-CoE token R | 100.00 |",
                             "| KV-CoE token C |", "| KV-CoE layer R | 100.00 | 0.00 | 100.00 | 1 |", "| KV-CoE layer C |",
                             "| Hidden CoE R |", "| Hidden CoE C |"})
        EXPECT_NE(e.out.find(row), std::string::npos) << row << "\n" << e.out;
    const std::string svg = slurp(d.path + "/roc.svg");
    EXPECT_EQ(svg.rfind("<svg", 0), 0u);
    EXPECT_NE(svg.find("KV-CoE token R"), std::string::npos);
    json j = json::parse(slurp(d.path + "/e.json"));
    EXPECT_EQ(j["n"], 8);
    EXPECT_EQ(j["scores"].size(), 12u);
    // a null wrong answer ranked lowest keeps the perfect separation (null row 3 is wrong)
    EXPECT_DOUBLE_EQ(j["scores"][7]["auroc"].get<double>(), 1.0);

    auto b = run_cli("eval coe " + d.path + "/r.jsonl --bootstrap 200");
    ASSERT_EQ(b.rc, 0) << b.out;
    EXPECT_NE(b.out.find("| Maxprob | 100.00 | 100.00–100.00 |"), std::string::npos) << b.out;
    EXPECT_NE(b.out.find("paired bootstrap, 200 resamples"), std::string::npos) << b.out;
    EXPECT_NE(b.out.find("KV-CoE token R − Hidden CoE R: +0.00"), std::string::npos) << b.out;
    auto g = run_cli("eval coe " + d.path + "/r.jsonl --by level");
    ASSERT_EQ(g.rc, 0) << g.out;
    EXPECT_NE(g.out.find("| 1 | 4 | 50.00% | 0 |"), std::string::npos) << g.out;
    EXPECT_NE(g.out.find("| 2 | 4 | 50.00% | 1 |"), std::string::npos) << g.out;
    EXPECT_NE(g.out.find("AUROC within each level"), std::string::npos) << g.out;
    EXPECT_NE(g.out.find("| Length baseline (−tokens) | 50.00 | 50.00 |"), std::string::npos) << g.out;
}

TEST(CoeCli, BadInputNamesTheLine) {
    KVLENS_REQUIRE_FILE(stories());
    test::TempDir d;
    const std::string p = d.path;
    write_file(p + "/bad.jsonl", "{\"id\":\"1\",\"question\":\"1+1\",\"answer\":\"2\"}\n\n{\"id\":\"2\",question:1}\n");
    expect_one_clear_error(run_cli("coe -m " + stories() + " --data " + p + "/bad.jsonl --format arith -o " + p + "/r.jsonl"),
                           "bad.jsonl:3: malformed JSON");
    write_file(p + "/miss.jsonl", "{\"id\":\"1\",\"question\":\"1+1\",\"answer\":\"2\"}\n{\"id\":\"2\",\"question\":\"1+2\"}\n");
    expect_one_clear_error(run_cli("coe -m " + stories() + " --data " + p + "/miss.jsonl --format arith -o " + p + "/r.jsonl"),
                           "miss.jsonl:2: missing field 'answer'");
    write_file(p + "/dup.jsonl", "{\"id\":\"1\",\"question\":\"1+1\",\"answer\":\"2\"}\n{\"id\":\"1\",\"question\":\"1+2\",\"answer\":\"3\"}\n");
    expect_one_clear_error(run_cli("coe -m " + stories() + " --data " + p + "/dup.jsonl --format arith -o " + p + "/r.jsonl"),
                           "duplicate id '1'");

    // records: malformed line, missing field, wrong type — in eval and when resuming
    std::string recs = two_class_records();
    std::string broken = recs;
    broken.insert(broken.find('\n') + 1, "{not json}\n");
    write_file(p + "/r1.jsonl", broken);
    expect_one_clear_error(run_cli("eval coe " + p + "/r1.jsonl"), "r1.jsonl:2: malformed JSON");
    write_file(p + "/ok.jsonl", "{\"id\":\"1\",\"question\":\"1+1\",\"answer\":\"2\"}\n");
    expect_one_clear_error(run_cli("coe -m " + stories() + " --data " + p + "/ok.jsonl --format arith -o " + p + "/r1.jsonl"),
                           "r1.jsonl:2: malformed JSON");
    json r = json::parse(recs.substr(0, recs.find('\n')));
    r.erase("hidden");
    write_file(p + "/r2.jsonl", recs + r.dump() + "\n");
    expect_one_clear_error(run_cli("eval coe " + p + "/r2.jsonl"), "r2.jsonl:9: missing field 'hidden'");
    r = json::parse(recs.substr(0, recs.find('\n')));
    r["correct"] = "yes";
    write_file(p + "/r3.jsonl", r.dump() + "\n");
    expect_one_clear_error(run_cli("eval coe " + p + "/r3.jsonl"), "r3.jsonl:1: field 'correct'");
    write_file(p + "/empty.jsonl", "\n");
    expect_one_clear_error(run_cli("eval coe " + p + "/empty.jsonl"), "no records");
    expect_one_clear_error(run_cli("eval coe " + p + "/absent.jsonl"), "cannot open");
    expect_one_clear_error(run_cli("eval think " + p + "/r.jsonl"), "unknown evaluation 'think'");
    expect_one_clear_error(run_cli("coe -m " + stories() + " --data " + p + "/ok.jsonl --format arith --mode slow -o " + p + "/r4.jsonl"),
                           "needs a chat template");
}

TEST(CoeCli, ChatModesOnRandomQwen3) {
    test::TempDir d;
    RandomModelSpec s;  // 4 layers, n_embd 64: a Qwen3 with the qwen2 vocabulary (ChatML special tokens)
    s.vocab_gguf = test::llama_dir() + "/models/ggml-vocab-qwen2.gguf";
    s.n_ctx = 512;
    KVLENS_REQUIRE_FILE(s.vocab_gguf);
    const std::string m = d.path + "/q.gguf";
    write_random_model(s, m);
    ASSERT_EQ(run_cli("arith -n 1 --seed 1 -o " + d.path + "/a.jsonl").rc, 0);
    int prompt_tokens[3] = {0, 0, 0};
    const char * modes[3] = {"none", "slow", "fast"};
    for (int i = 0; i < 3; ++i) {
        const std::string out = d.path + "/r-" + modes[i] + ".jsonl";
        auto o = run_cli("coe -m " + m + " --prompt-format qwen3 --data " + d.path + "/a.jsonl --format arith -o " + out +
                        " -n 6 -t 1 --mode " + modes[i]);
        ASSERT_EQ(o.rc, 0) << o.out;
        auto recs = read_jsonl(out);
        ASSERT_EQ(recs.size(), 1u);
        expect_record_fields(recs[0]);
        EXPECT_EQ(recs[0]["mode"], modes[i]);
        prompt_tokens[i] = recs[0]["prompt_tokens"].get<int>();
    }
    // slow appends "<think>\n", fast "<think>\n</think>\n\n" (the hand-written qwen3 format) after the assistant opener
    EXPECT_GT(prompt_tokens[1], prompt_tokens[0]);
    EXPECT_GT(prompt_tokens[2], prompt_tokens[1]);
    auto o = run_cli("coe -m " + m + " --chat-template chatml --data " + d.path + "/a.jsonl --format arith -o " + d.path +
                    "/x.jsonl --mode medium");
    expect_one_clear_error(o, "unknown mode 'medium'");
}

// The memory `kvlens bench coe` computes from shapes is what KvCoeConsumer holds: after T decoded tokens,
// 3w + 2(T−1) (token axis) + L·w + L (layer axis) + (L+1)·E + (L+1) (hidden) + w (scratch row), w = 2·row.
TEST(CoeCli, StateFloatsMatchTheShapeFormula) {
    const int L = 3, row = 8, E = 12, prompt = 5;
    std::vector<int> layers = {0, 1, 2};
    KvCoeOptions o;
    o.layers = layers;
    o.hidden_layers = layers;
    KvCoeConsumer c(o);
    c.reset(prompt);
    std::vector<float> k(row), v(row), h(E);
    for (long T : {1L, 2L, 50L}) {
        c.reset(prompt);
        for (long t = 0; t < T; ++t) {
            const int pos = prompt + (int) t;
            for (int i = 0; i < row; ++i) k[i] = float(std::sin(pos * 0.7 + i)), v[i] = float(std::cos(pos * 0.3 + i));
            for (int i = 0; i < E; ++i) h[i] = float(std::sin(pos * 0.1 + i * 0.5));
            c.on_hidden(kEmbeddingLayer, pos, h.data(), E);
            for (int l = 0; l < L; ++l) {
                c.on_kv(l, pos, k.data(), v.data(), row);
                c.on_hidden(l, pos, h.data(), E);
            }
        }
        (void) c.token_axis();
        const size_t w = 2 * row;
        const size_t token = T >= 2 ? 3 * w + 2 * (T - 1) : (T == 1 ? 2 * w : 0);  // x_0 and prev; scratch after 2 points
        EXPECT_EQ(c.state_floats(), token + L * w + L + (L + 1) * E + (L + 1) + w) << "T=" << T;
        EXPECT_GE(c.state_bytes(), 8 * (token + L * w + (L + 1) * E));
    }
}

// One pass == post hoc: the streaming chains of CoeRunner equal coe_scores() on the rows a KvStore captured in the
// same generation (generated positions only; token axis = mean over layers of [K;V], layer axis = per-layer means,
// hidden = embedding input then each layer's output, means over generated positions).
TEST(CoeCli, OnePassEqualsPostHocOnRandomQwen3) {
    test::TempDir d;
    RandomModelSpec spec;
    spec.vocab_gguf = test::llama_dir() + "/models/ggml-vocab-qwen2.gguf";
    spec.n_ctx = 256;
    spec.seed = 5;
    KVLENS_REQUIRE_FILE(spec.vocab_gguf);
    write_random_model(spec, d.path + "/q.gguf");
    auto model = Model::load({d.path + "/q.gguf"});
    SessionParams sp;
    sp.n_threads = 1;
    sp.n_ctx = 128;
    Session s(model, sp);
    CoeRunOptions ro;
    ro.max_tokens = 12;
    CoeRunner runner(s, ro);  // sets the tap: all layers, K/V + hidden + embedding input
    const ModelFacts & f = model->facts();
    KvStore store(runner.options().layers, f.kv_row(), f.n_embd);
    s.subscribe(&store);
    auto prompt = model->tokenize("<|im_start|>user\n12+34<|im_end|>\n<|im_start|>assistant\n", false, true);
    CoeSample r = runner.run(prompt);
    s.unsubscribe(&store);
    ASSERT_TRUE(r.kv_token && r.kv_layer && r.hidden);
    ASSERT_TRUE(r.maxprob && r.perplexity && r.entropy);
    EXPECT_TRUE(r.hit_eog || (r.hit_cap && r.tokens.size() == 12u));

    const int L = (int) store.layers().size(), row = store.row_size(), p0 = r.n_prompt, p1 = store.n_pos(0);
    ASSERT_GE(p1 - p0, 2);
    auto kv = [&](int slot, int pos, std::vector<double> & acc) {
        for (int i = 0; i < row; ++i) acc[i] += store.k(slot, pos)[i], acc[row + i] += store.v(slot, pos)[i];
    };
    std::vector<std::vector<float>> tok, lay, hid;
    for (int p = p0; p < p1; ++p) {
        std::vector<double> acc(2 * row, 0.0);
        for (int l = 0; l < L; ++l) kv(l, p, acc);
        tok.emplace_back(acc.begin(), acc.end());
        for (auto & x : tok.back()) x /= L;
    }
    for (int l = 0; l < L; ++l) {
        std::vector<double> acc(2 * row, 0.0);
        for (int p = p0; p < p1; ++p) kv(l, p, acc);
        lay.emplace_back(acc.begin(), acc.end());
        for (auto & x : lay.back()) x /= (p1 - p0);
    }
    std::vector<int> hslots = {store.hidden_slot_embedding()};
    for (int l = 0; l < L; ++l) hslots.push_back(l);
    for (int hs : hslots) {
        std::vector<double> acc(f.n_embd, 0.0);
        ASSERT_EQ(store.n_hidden_pos(hs), p1);
        for (int p = p0; p < p1; ++p)
            for (int i = 0; i < f.n_embd; ++i) acc[i] += store.hidden(hs, p)[i];
        hid.emplace_back(acc.begin(), acc.end());
        for (auto & x : hid.back()) x /= (p1 - p0);
    }
    auto same = [](const CoeScores & a, const std::optional<CoeScores> & b, const char * what) {
        ASSERT_TRUE(b) << what;
        EXPECT_NEAR(a.mag, b->mag, 1e-4 * std::max(1.0, std::fabs(b->mag))) << what;
        EXPECT_NEAR(a.ang, b->ang, 1e-4 * std::max(1.0, std::fabs(b->ang))) << what;
        EXPECT_NEAR(a.r, b->r, 1e-4) << what;
        EXPECT_NEAR(a.c, b->c, 1e-4 * std::max(1.0, std::fabs(b->c))) << what;
    };
    same(*r.kv_token, coe_scores(tok), "token axis");
    same(*r.kv_layer, coe_scores(lay), "layer axis");
    same(*r.hidden, coe_scores(hid), "hidden");
    // a second sample on the same session and runner starts from scratch
    CoeSample r2 = runner.run(prompt);
    ASSERT_TRUE(r2.kv_token);
    EXPECT_NEAR(r2.kv_token->r, r.kv_token->r, 1e-9);
    EXPECT_EQ(r2.tokens, r.tokens);
}
