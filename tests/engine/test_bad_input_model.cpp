// Bad input: each case gets one clear error line ("kvlens: error: ...") and a non-zero exit, never an abort.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ggml.h"
#include "gguf.h"
#include "test_support.h"

using namespace kvlens;

namespace {

struct Outcome {
    int rc;
    std::string out;
};

Outcome kvlens(const std::string & args) {
    Outcome o;
    o.rc = test::run(test::kvlens_bin() + " " + args + " </dev/null", &o.out);
    return o;
}

void expect_one_clear_error(const Outcome & o, const std::string & needle) {
    kvlens::test::expect_one_clear_error(o.rc, o.out, needle, /*exit_1=*/false);
}

void write_file(const std::string & path, const std::string & bytes) { std::ofstream(path, std::ios::binary) << bytes; }

using kvlens::test::slurp;

struct BadInput : ::testing::Test {
    test::TempDir dir;
    std::string M = test::stories_gguf();
};

TEST_F(BadInput, MissingModel) { expect_one_clear_error(kvlens("info -m " + dir.path + "/nope.gguf"), "not found"); }

TEST_F(BadInput, EmptyModel) {
    write_file(dir.path + "/empty.gguf", "");
    expect_one_clear_error(kvlens("info -m " + dir.path + "/empty.gguf"), "empty");
}

TEST_F(BadInput, NotGguf) {
    write_file(dir.path + "/text.gguf", "this is not a model at all\n");
    expect_one_clear_error(kvlens("info -m " + dir.path + "/text.gguf"), "not a GGUF");
}

TEST_F(BadInput, TruncatedModel) {
    KVLENS_REQUIRE_FILE(M);
    std::string all = slurp(M);
    write_file(dir.path + "/half.gguf", all.substr(0, all.size() / 2));
    expect_one_clear_error(kvlens("info -m " + dir.path + "/half.gguf"), "truncated");
    write_file(dir.path + "/head.gguf", all.substr(0, 100));
    expect_one_clear_error(kvlens("info -m " + dir.path + "/head.gguf"), "truncated");
}

TEST_F(BadInput, RecurrentArchitecture) {
    gguf_context * g = gguf_init_empty();
    gguf_set_val_str(g, "general.architecture", "mamba");
    ASSERT_TRUE(gguf_write_to_file(g, (dir.path + "/mamba.gguf").c_str(), false));
    gguf_free(g);
    expect_one_clear_error(kvlens("info -m " + dir.path + "/mamba.gguf"), "not a KV cache");
}

TEST_F(BadInput, PromptLongerThanContext) {
    KVLENS_REQUIRE_FILE(M);
    std::string p;
    for (int i = 0; i < 40; ++i) p += "Once upon a time ";
    expect_one_clear_error(kvlens("generate -m " + M + " -c 32 -n 4 -p '" + p + "'"), "does not fit the context");
}

TEST_F(BadInput, EmptyPrompt) {
    KVLENS_REQUIRE_FILE(M);
    expect_one_clear_error(kvlens("generate -m " + M + " -p ''"), "empty prompt");
    write_file(dir.path + "/empty.txt", "");
    expect_one_clear_error(kvlens("kv-dump -m " + M + " -f " + dir.path + "/empty.txt -o " + dir.path + "/d"), "empty prompt");
}

TEST_F(BadInput, InvalidUtf8) {
    KVLENS_REQUIRE_FILE(M);
    write_file(dir.path + "/bad.txt", std::string("Once upon \xff\xfe a time"));
    expect_one_clear_error(kvlens("generate -m " + M + " -f " + dir.path + "/bad.txt"), "UTF-8");
}

TEST_F(BadInput, LayersOutOfRangeOrDuplicated) {
    KVLENS_REQUIRE_FILE(M);
    std::string base = "kv-dump -m " + M + " -p 'Once upon a time' -o " + dir.path + "/d --layers ";
    expect_one_clear_error(kvlens(base + "7"), "out of range");
    expect_one_clear_error(kvlens(base + "-1"), "out of range");
    expect_one_clear_error(kvlens(base + "1,1"), "twice");
    expect_one_clear_error(kvlens(base + "last:9"), "1..5");
    expect_one_clear_error(kvlens(base + "zero"), "invalid layer");
}

TEST_F(BadInput, CacheTypeThatCannotHoldTheHead) {
    KVLENS_REQUIRE_FILE(M);
    // stories260K's head width is 8: a q8_0 cache (blocks of 32) cannot hold it
    expect_one_clear_error(kvlens("generate -m " + M + " -p 'Once' -fa on -ctk q8_0 -ctv q8_0"), "block size");
    expect_one_clear_error(kvlens("generate -m " + M + " -p 'Once' -ctk q9_9"), "unknown cache type");
}

TEST_F(BadInput, UnknownCommandAndFlags) {
    expect_one_clear_error(kvlens("frobnicate"), "unknown command");
    expect_one_clear_error(kvlens("info -m " + M + " --bogus"), "bogus");
}


// ---- issue 16: no abort on any input, no silent data loss ----------------------------------------------------

std::string reasoner() { return test::source_dir() + "/models/kvlens-reasoner.gguf"; }

bool exists(const std::string & p) { return test::file_exists(p); }

// The folder's entries (to see that no temporary file is left behind).
std::string listing(const std::string & dir) {
    std::string out;
    test::run("ls -A '" + dir + "'", &out);
    return out;
}

TEST_F(BadInput, NumericFlagsAreRangeCheckedAndNanSafe) {
    KVLENS_REQUIRE_FILE(M);
    const std::string g = "generate -m " + M + " -p 'Once' -n 2 ";
    expect_one_clear_error(kvlens(g + "--temp nan"), "--temp: nan is not a finite number");
    expect_one_clear_error(kvlens(g + "--temp inf"), "not a finite number");
    expect_one_clear_error(kvlens(g + "--temp -1"), "out of range");
    expect_one_clear_error(kvlens(g + "--top-p 2"), "--top-p: 2 is out of range");
    expect_one_clear_error(kvlens(g + "--top-p nan"), "not a finite number");
    expect_one_clear_error(kvlens(g + "-c -5"), "out of range");
    expect_one_clear_error(kvlens(g + "-b 0"), "out of range");
    expect_one_clear_error(kvlens("think -m " + M + " -p 'x' --tau nan"), "--tau: nan is not a finite number");
    expect_one_clear_error(kvlens("think -m " + M + " -p 'x' --delta inf"), "not a finite number");
    expect_one_clear_error(kvlens("think -m " + M + " -p 'x' --give-up nan"), "finite numbers");
    const std::string t = "probe train --data " + dir.path + "/none.jsonl -o " + dir.path + "/c.gguf ";
    expect_one_clear_error(kvlens(t + "--wd -1"), "--wd: -1 is out of range");
    expect_one_clear_error(kvlens(t + "--wd nan"), "--wd: nan is not a finite number");
    expect_one_clear_error(kvlens(t + "--lr nan"), "--lr: nan is not a finite number");
    expect_one_clear_error(kvlens(t + "--lr inf"), "--lr: inf is not a finite number");
    expect_one_clear_error(kvlens(t + "--lr 0"), "out of range");
    expect_one_clear_error(kvlens(t + "--val-frac 1"), "--val-frac: 1 is out of range");
    expect_one_clear_error(kvlens(t + "--val-frac nan"), "not a finite number");
    expect_one_clear_error(kvlens("eval coe " + dir.path + "/r.jsonl --bootstrap -5"), "--bootstrap: -5 is out of range");
    expect_one_clear_error(kvlens("embed -m " + M + " -p x --n-seq 0"), "--n-seq: 0 is out of range");
    expect_one_clear_error(kvlens("embed -m " + M + " -p x --seed -3"), "negative");
}

TEST_F(BadInput, EvalByAFieldNoRecordHas) {
    write_file(dir.path + "/r.jsonl",
               R"({"id":"1","format":"arith","mode":"slow","correct":true,"hit_cap":false,"tokens":3,"maxprob":0.9,"ppl":1.1,"entropy":0.1,"kv_token":null,"kv_layer":null,"hidden":null})"
               "\n");
    expect_one_clear_error(kvlens("eval coe " + dir.path + "/r.jsonl --by nosuchfield"), "no record has that field");
    EXPECT_EQ(kvlens("eval coe " + dir.path + "/r.jsonl --by mode").rc, 0);
}

TEST_F(BadInput, PromptAndFileTogetherAndFileThatIsAFolder) {
    KVLENS_REQUIRE_FILE(M);
    write_file(dir.path + "/p.txt", "Once upon");
    for (const char * cmd : {"generate", "kv-dump -o %D/d", "embed", "think"}) {
        std::string c = cmd;
        if (c.find("%D") != std::string::npos) c.replace(c.find("%D"), 2, dir.path);
        expect_one_clear_error(kvlens(c + " -m " + M + " -p 'Once' -f " + dir.path + "/p.txt"), "not both");
        expect_one_clear_error(kvlens(c + " -m " + M + " -f " + dir.path), "is a directory");
    }
}

TEST_F(BadInput, NewcomerFlags) {
    KVLENS_REQUIRE_FILE(M);
    // -s -1: a random seed, as llama.cpp; -n -1: until the context ends
    Outcome o = kvlens("generate -m " + M + " -p 'Once' -n 2 -s -1");
    EXPECT_EQ(o.rc, 0) << o.out;
    o = kvlens("generate -m " + M + " -p 'Once' -n -1 -c 24 --jsonl");
    EXPECT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("\"stop\":\"context\""), std::string::npos) << o.out;
    // --help shows the defaults
    o = kvlens("generate --help");
    EXPECT_NE(o.out.find("=128"), std::string::npos) << o.out;  // -n
    EXPECT_NE(o.out.find("=0.95"), std::string::npos) << o.out;  // --top-p
    // -o/--output everywhere (kv-dump said --out)
    EXPECT_EQ(kvlens("kv-dump -m " + M + " -p 'Once' --output " + dir.path + "/kd").rc, 0);
    // -t above the core count: a warning, not an error
    o = kvlens("generate -m " + M + " -p 'Once' -n 1 -t 4000");
    EXPECT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("kvlens: warning: -t 4000"), std::string::npos) << o.out;
}

TEST_F(BadInput, GenerateStopsAtTheContextEndWithItsSummary) {
    KVLENS_REQUIRE_FILE(M);
    Outcome o = kvlens("generate -m " + M + " -p 'Once upon a time' -n 100 -c 32 --jsonl");
    EXPECT_EQ(o.rc, 0) << o.out;
    std::string last = o.out.substr(0, o.out.find_last_not_of('\n') + 1);
    last = last.substr(last.rfind('\n') + 1);
    EXPECT_NE(last.find("\"summary\":true"), std::string::npos) << last;
    EXPECT_NE(last.find("\"stop\":\"context\""), std::string::npos) << last;
}

TEST_F(BadInput, FullDiskIsAnErrorNeverASilentSuccess) {
    KVLENS_REQUIRE_FILE(M);
    const std::string e = "embed -m " + M + " -p 'Once upon' ";
    // only stdout to /dev/full (the braces keep stderr for the capture)
    auto to_full = [](const std::string & args) {
        Outcome o;
        o.rc = test::run("{ " + test::kvlens_bin() + " " + args + " >/dev/full </dev/null; }", &o.out);
        return o;
    };
    Outcome o = to_full(e);
    EXPECT_EQ(o.rc, 1) << o.out;
    EXPECT_NE(o.out.find("kvlens: error: cannot write to standard output: No space left"), std::string::npos) << o.out;
    for (const char * ext : {"npy", "jsonl"}) {
        const std::string link = dir.path + "/full." + ext;
        ASSERT_EQ(symlink("/dev/full", link.c_str()), 0);
        expect_one_clear_error(kvlens(e + "-o " + link), "No space left");
    }
    Outcome a = to_full("arith -n 5 -o -");
    EXPECT_EQ(a.rc, 1) << a.out;
    EXPECT_NE(a.out.find("kvlens: error:"), std::string::npos) << a.out;
}

// A write that fails half-way (here: the file-size limit, as a full disk would) leaves the old file, or none,
// and no temporary file.
TEST_F(BadInput, FailedWritesLeaveNoHalfFile) {
    KVLENS_REQUIRE_FILE(M);
    std::string texts;
    for (int i = 0; i < 200; ++i) texts += "Once upon a time there was text " + std::to_string(i) + "\n";
    write_file(dir.path + "/t.txt", texts);
    const std::string out = dir.path + "/o/e.npy";
    ASSERT_EQ(test::run("mkdir " + dir.path + "/o"), 0);
    const std::string limited = "sh -c \"trap '' XFSZ; ulimit -f 4; exec " + test::kvlens_bin() + " embed -m " + M +
                                " -f " + dir.path + "/t.txt -o " + out + "\"";
    std::string msg;
    EXPECT_EQ(test::run(limited, &msg), 1) << msg;
    EXPECT_NE(msg.find("kvlens: error: write failed"), std::string::npos) << msg;
    EXPECT_FALSE(exists(out)) << "a half-written " << out;
    EXPECT_EQ(listing(dir.path + "/o"), "") << "a temporary file was left behind";
    write_file(out, "old");
    EXPECT_EQ(test::run(limited, &msg), 1) << msg;
    EXPECT_EQ(slurp(out), "old") << "the old file was damaged";
    EXPECT_EQ(listing(dir.path + "/o"), "e.npy\n");
}

TEST_F(BadInput, OutputPathsAreCheckedBeforeTheWork) {
    KVLENS_REQUIRE_FILE(M);
    expect_one_clear_error(kvlens("probe train --data " + dir.path + "/none.jsonl -o /proc/x"), "cannot write /proc/x");
    expect_one_clear_error(kvlens("embed -m " + M + " -p x -o /proc/x.npy"), "cannot write /proc/x.npy");
    expect_one_clear_error(kvlens("embed -m " + M + " -p x -o " + dir.path), "is a directory");
    expect_one_clear_error(kvlens("eval coe " + dir.path + "/none.jsonl --json /proc/x.json"), "cannot write /proc/x.json");
}

TEST_F(BadInput, KvDumpReplacesAnOlderDumpWhole) {
    KVLENS_REQUIRE_FILE(M);
    const std::string d = dir.path + "/dump";
    ASSERT_EQ(kvlens("kv-dump -m " + M + " -p 'Once upon' --hidden -o " + d).rc, 0);
    ASSERT_TRUE(exists(d + "/hidden.npy"));
    Outcome o = kvlens("kv-dump -m " + M + " -p 'Once upon' -o " + d);
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_FALSE(exists(d + "/hidden.npy")) << "a stale hidden.npy beside a manifest that does not list it";
    EXPECT_EQ(slurp(d + "/manifest.json").find("hidden.npy\": ["), std::string::npos);
    EXPECT_EQ(listing(d), "k.npy\nmanifest.json\nv.npy\n");
}

TEST_F(BadInput, ModelWithNanWeightsIsReported) {
    KVLENS_REQUIRE_FILE(M);
    // stories260K with its token embeddings overwritten by NaN: every row, logit and embedding is NaN
    std::string all = slurp(M);
    gguf_context * g = gguf_init_from_file(M.c_str(), {true, nullptr});
    ASSERT_NE(g, nullptr);
    const int64_t t = gguf_find_tensor(g, "token_embd.weight");
    ASSERT_GE(t, 0);
    ASSERT_EQ(gguf_get_tensor_type(g, t), GGML_TYPE_F32);
    const size_t off = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, t), n = gguf_get_tensor_size(g, t);
    gguf_free(g);
    const float nan = NAN;
    for (size_t i = 0; i + 4 <= n; i += 4) all.replace(off + i, 4, (const char *) &nan, 4);
    const std::string bad = dir.path + "/nan.gguf";
    write_file(bad, all);
    expect_one_clear_error(kvlens("generate -m " + bad + " -p 'Once upon' -n 4"), "logits are not finite");
    expect_one_clear_error(kvlens("embed -m " + bad + " -p 'Once upon'"), "not finite");
}

TEST_F(BadInput, ClassifierKeyOfTheWrongType) {
    const std::string R = reasoner(), C = test::source_dir() + "/models/kvlens-reasoner.classifier.gguf";
    KVLENS_REQUIRE_FILE(R);
    KVLENS_REQUIRE_FILE(C);
    ggml_context * ctx = nullptr;
    gguf_context * g = gguf_init_from_file(C.c_str(), {false, &ctx});
    ASSERT_NE(g, nullptr);
    gguf_context * w = gguf_init_empty();
    gguf_set_kv(w, g);
    for (int64_t t = 0; t < gguf_get_n_tensors(g); ++t) gguf_add_tensor(w, ggml_get_tensor(ctx, gguf_get_tensor_name(g, t)));
    gguf_set_val_u32(w, "kvlens.probe.version", 1);  // written as int32
    const std::string bad = dir.path + "/c.gguf";
    ASSERT_TRUE(gguf_write_to_file(w, bad.c_str(), false));
    gguf_free(w);
    gguf_free(g);
    ggml_free(ctx);
    expect_one_clear_error(kvlens("think -m " + R + " --classifier " + bad + " -p '1+1'"), "kvlens.probe.version holds a u32");
}

TEST_F(BadInput, CoeRefusesEmptyDataAndMixedResumes) {
    const std::string R = reasoner();
    KVLENS_REQUIRE_FILE(R);
    KVLENS_REQUIRE_FILE(M);
    write_file(dir.path + "/empty.jsonl", "");
    expect_one_clear_error(kvlens("coe -m " + R + " --data " + dir.path + "/empty.jsonl --format arith -o " + dir.path + "/e.jsonl"),
                           "no rows");
    ASSERT_EQ(kvlens("arith -n 3 -o " + dir.path + "/a.jsonl").rc, 0);
    const std::string c = "coe -t 1 --data " + dir.path + "/a.jsonl --format arith -o " + dir.path + "/r.jsonl ";
    Outcome o = kvlens(c + "-m " + R + " --limit 2");
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("mode slow"), std::string::npos) << "a think template defaults to slow mode: " << o.out;
    EXPECT_EQ(o.out.find("cap below"), std::string::npos) << o.out;
    const std::string before = slurp(dir.path + "/r.jsonl");
    expect_one_clear_error(kvlens(c + "-m " + R + " --mode fast"), "mode slow, now fast");
    expect_one_clear_error(kvlens(c + "-m " + R + " --layers last:2"), "other settings (layers");
    expect_one_clear_error(kvlens(c + "-m " + R + " -n 64"), "other settings (cap");
    expect_one_clear_error(kvlens(c + "-m " + R + " -ctk f32"), "other settings");
    expect_one_clear_error(kvlens(c + "-m " + M + " --mode slow --prompt-format qwen3"), "other settings (model");
    EXPECT_EQ(slurp(dir.path + "/r.jsonl"), before) << "a refused resume changed the records";
    o = kvlens(c + "-m " + R);  // the same settings: resumes, the third row only
    ASSERT_EQ(o.rc, 0) << o.out;
    std::string recs = slurp(dir.path + "/r.jsonl");
    EXPECT_EQ(std::count(recs.begin(), recs.end(), '\n'), 3) << recs;
    EXPECT_EQ(recs.rfind(before, 0), 0u);
}

// think -o resumes as coe does: a killed run (here: cut after two records and half a line) is finished by the rerun,
// whose tables equal an uninterrupted run's; other settings are refused.
TEST_F(BadInput, ThinkResumesItsRecordsAndRefusesOtherSettings) {
    const std::string R = reasoner(), C = test::source_dir() + "/models/kvlens-reasoner.classifier.gguf";
    KVLENS_REQUIRE_FILE(R);
    KVLENS_REQUIRE_FILE(C);
    for (const std::string mode : {"", " --table"}) {
        const std::string out = dir.path + "/t" + std::to_string(mode.size()) + ".jsonl";
        const std::string cmd = test::kvlens_bin() + " think -m " + R + " --classifier " + C + " --arith 5" + mode + " -o " + out;
        std::string full, again;
        ASSERT_EQ(test::run("{ " + cmd + " 2>/dev/null; }", &full), 0) << full;  // stdout only
        const std::string recs = slurp(out);
        ASSERT_EQ(std::count(recs.begin(), recs.end(), '\n'), 5) << recs;
        size_t cut = 0;
        for (int k = 0; k < 2; ++k) cut = recs.find('\n', cut) + 1;
        write_file(out, recs.substr(0, cut) + recs.substr(cut, 40));  // two records and a torn third
        ASSERT_EQ(test::run("{ " + cmd + " 2>/dev/null; }", &again), 0) << again;
        EXPECT_EQ(again, full) << "the resumed run's tables differ";
        // the same problems, once each, whole lines (timings differ)
        auto ids = [](const std::string & text) {
            std::vector<std::string> v;
            std::stringstream ss(text);
            std::string line;
            while (std::getline(ss, line)) {
                auto j = nlohmann::json::parse(line, nullptr, false);
                v.push_back(j.is_discarded() ? "<torn>" : j.value("id", "<no id>"));
            }
            return v;
        };
        EXPECT_EQ(ids(slurp(out)), ids(recs)) << "records lost, duplicated or torn";
        EXPECT_EQ(slurp(out).substr(0, cut), recs.substr(0, cut)) << "the finished records were not kept as they were";
        expect_one_clear_error(kvlens("think -m " + R + " --classifier " + C + " --arith 5" + mode + " --tau 30 -o " + out),
                               "other settings (tau 50, now 30)");
    }
}

}  // namespace
