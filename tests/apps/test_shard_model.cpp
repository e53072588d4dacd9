// Data-parallel offline runs (issue 17): `--shard I/N` on coe, think, probe prep, embed and bench classify, run as
// separate processes at the same time, then `kvlens merge`: the merged output equals the unsharded run's, in the
// same order, line for line (records: all but the wall-clock "seconds"; embeddings: byte for byte with -fa off).
// Resume of a shard into its own -o, and every refusal of merge (missing, duplicate or foreign shards, missing or
// foreign items, torn lines, stale embedding manifests) with one error line and no output written.
// All on the embedded reasoner (models/, in the repository): seconds each.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "kvlens/npy.h"
#include "test_support.h"

namespace kvlens {
namespace {

using json = nlohmann::ordered_json;

std::string reasoner() { return test::source_dir() + "/models/kvlens-reasoner.gguf"; }
std::string classifier() { return test::source_dir() + "/models/kvlens-reasoner.classifier.gguf"; }
std::string bin() { return test::kvlens_bin(); }

struct Outcome {
    int rc;
    std::string out;
};

Outcome cli(const std::string & args) {
    Outcome o;
    o.rc = test::run(bin() + " " + args + " </dev/null", &o.out);
    return o;
}

using kvlens::test::slurp;

void write_file(const std::string & p, const std::string & bytes) { std::ofstream(p, std::ios::binary) << bytes; }

void expect_one_clear_error(const Outcome & o, const std::string & needle) {
    kvlens::test::expect_one_clear_error(o.rc, o.out, needle);
}

// Runs `kvlens ARGS_k` for every k as separate processes at the same time; all must exit 0.
void run_together(const std::vector<std::string> & args, const std::string & dir) {
    std::vector<pid_t> pids;
    for (size_t k = 0; k < args.size(); ++k) {
        const std::string log = dir + "/shard" + std::to_string(k) + ".log";
        pid_t pid = fork();
        if (pid == 0) {
            const std::string cmd = "exec " + bin() + " " + args[k] + " </dev/null >" + log + " 2>&1";
            execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *) nullptr);
            _exit(127);
        }
        pids.push_back(pid);
    }
    for (size_t k = 0; k < pids.size(); ++k) {
        int st = 0;
        waitpid(pids[k], &st, 0);
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
            << "shard process " << k << " failed: " << slurp(dir + "/shard" + std::to_string(k) + ".log");
    }
}

// A record without its wall-clock field ("seconds", at any depth), dumped in its own key order.
json untimed(json j) {
    if (j.is_object()) {
        j.erase("seconds");
        for (auto & [k, v] : j.items()) v = untimed(v);
    }
    return j;
}

std::vector<std::string> untimed_lines(const std::string & path) {
    std::vector<std::string> out;
    std::istringstream in(slurp(path));
    for (std::string line; std::getline(in, line);) {
        json j = json::parse(line, nullptr, false);
        out.push_back(j.is_discarded() ? "NOT JSON: " + line : untimed(j).dump());
    }
    return out;
}

void expect_same_records(const std::string & merged, const std::string & whole) {
    const auto m = untimed_lines(merged), w = untimed_lines(whole);
    ASSERT_FALSE(w.empty());
    ASSERT_EQ(m.size(), w.size()) << merged << " vs " << whole;
    for (size_t i = 0; i < m.size(); ++i) ASSERT_EQ(m[i], w[i]) << "line " << i + 1 << " of " << merged << " differs";
    EXPECT_EQ(slurp(merged).find("\"shard\""), std::string::npos) << "shard fields left in the merged output";
}

// `base` (a kvlens command line without -o) unsharded into DIR/whole.EXT, as N shards run together into
// DIR/sK.EXT, merged into DIR/merged.EXT (shards given in reverse order: merge orders by index, not by argument).
struct Sharded {
    std::string whole, merged;
    std::vector<std::string> shards;
};

Sharded run_sharded(const std::string & base, const std::string & dir, int n, const std::string & ext = "jsonl") {
    Sharded s{dir + "/whole." + ext, dir + "/merged." + ext, {}};
    Outcome o = cli(base + " -o " + s.whole);
    EXPECT_EQ(o.rc, 0) << o.out;
    std::vector<std::string> args;
    for (int i = 0; i < n; ++i) {
        s.shards.push_back(dir + "/s" + std::to_string(i) + "." + ext);
        args.push_back(base + " --shard " + std::to_string(i) + "/" + std::to_string(n) + " -o " + s.shards.back());
    }
    run_together(args, dir);
    std::string files;
    for (int i = n - 1; i >= 0; --i) files += " " + s.shards[i];
    o = cli("merge -o " + s.merged + files);
    EXPECT_EQ(o.rc, 0) << o.out;
    return s;
}

std::string coe_args(const std::string & data) { return "coe -m " + reasoner() + " --data " + data + " --format arith -t 1"; }

// ---- each command: 3 shards merged == the unsharded run --------------------------------------------------------

TEST(Shard, CoeThreeShardsMergeToTheUnshardedRecords) {
    test::TempDir d;
    ASSERT_EQ(cli("arith -n 14 --seed 5 -o " + d.path + "/q.jsonl").rc, 0);
    Sharded s = run_sharded(coe_args(d.path + "/q.jsonl"), d.path, 3);
    expect_same_records(s.merged, s.whole);
    // each shard holds its own items only: 14 = 5 + 5 + 4
    EXPECT_EQ(untimed_lines(s.shards[0]).size(), 5u);
    EXPECT_EQ(untimed_lines(s.shards[2]).size(), 4u);
    // the merged file is a valid coe output: eval reads it, and a rerun into it resumes with nothing to do
    Outcome o = cli("eval coe " + s.merged);
    EXPECT_EQ(o.rc, 0) << o.out;
    o = cli(coe_args(d.path + "/q.jsonl") + " -o " + s.merged);
    EXPECT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("(0 new)"), std::string::npos) << o.out;
}

TEST(Shard, ThinkArithThreeShardsMergeToTheUnshardedRecords) {
    test::TempDir d;
    const std::string base = "think -m " + reasoner() + " --classifier " + classifier() + " --arith 9 -t 1 --table";
    Sharded s = run_sharded(base, d.path, 3);
    expect_same_records(s.merged, s.whole);
    // the unsharded command on the merged file reads every problem back (nothing rerun) and prints the whole
    // set's Table 3, as it does on the unsharded file
    std::string on_merged, on_whole;
    ASSERT_EQ(test::run(bin() + " " + base + " -o " + s.merged, &on_merged), 0) << on_merged;
    ASSERT_EQ(test::run(bin() + " " + base + " -o " + s.whole, &on_whole), 0) << on_whole;
    EXPECT_NE(on_merged.find("(read back, not rerun)"), std::string::npos) << on_merged;
    auto tables = [](const std::string & t) { return t.substr(std::min(t.find("Table 3"), t.size())); };  // no progress lines
    EXPECT_EQ(tables(on_merged), tables(on_whole));
    EXPECT_NE(on_merged.find("always-slow"), std::string::npos) << on_merged;
    EXPECT_EQ(untimed_lines(s.merged).size(), 9u) << "the read-back run appended records";
}

TEST(Shard, ProbePrepThreeShardsMergeToTheUnshardedFile) {
    test::TempDir d;
    Sharded s = run_sharded("probe prep -m " + reasoner() + " -t 1 --arith 7 --fast-cap 32 --slow-cap 224 --switch-aware --seq-len 32",
                            d.path, 3);
    expect_same_records(s.merged, s.whole);  // the meta line first, then the records in problem order
    EXPECT_NE(slurp(s.merged).rfind("{\"meta\"", 0), std::string::npos);
    // the merged file trains like the unsharded one
    Outcome o = cli("probe train --data " + s.merged + " --epochs 2 -o " + d.path + "/c.gguf");
    EXPECT_EQ(o.rc, 0) << o.out;
}

void write_texts(const std::string & path, int n) {
    std::ofstream f(path);
    for (int i = 0; i < n; ++i) f << "{\"text\": \"" << i * 37 << "+" << i * 91 + 5 << "\"}\n";
}

TEST(Shard, EmbedNpyAndJsonlMergeByteForByteWithoutFlashAttention) {
    test::TempDir d;
    write_texts(d.path + "/t.jsonl", 11);
    const std::string base = "embed -m " + reasoner() + " -f " + d.path + "/t.jsonl -t 1 -fa off";
    for (const char * ext : {"npy", "jsonl"}) {
        test::TempDir e;
        Sharded s = run_sharded(base, e.path, 3, ext);
        const std::string w = slurp(s.whole), m = slurp(s.merged);
        ASSERT_FALSE(w.empty());
        EXPECT_TRUE(m == w) << ext << ": merged embeddings are not byte-equal to the unsharded run's";
        EXPECT_TRUE(test::file_exists(s.shards[0] + ".shard.json"));
    }
}

// With flash attention (the CPU default) a text's vector depends slightly on which texts share its decode: the
// CPU flash-attention kernel picks its path by the batch's shape and accumulates in f16. A shard's batches
// differ from the unsharded run's, so the rows agree to ~1e-4, as `embed`'s own batched-vs-alone test allows.
TEST(Shard, EmbedWithFlashAttentionAgreesWithinTheBatchTolerance) {
    test::TempDir d;
    write_texts(d.path + "/t.jsonl", 11);
    Sharded s = run_sharded("embed -m " + reasoner() + " -f " + d.path + "/t.jsonl -t 1 -fa on", d.path, 3, "npy");
    std::vector<size_t> sw, sm;
    auto w = read_npy(s.whole, sw), m = read_npy(s.merged, sm);
    ASSERT_EQ(sw, sm);
    ASSERT_EQ(sw.size(), 2u);
    ASSERT_EQ(sw[0], 11u);
    for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(m[i], w[i], 1e-4) << "row " << i / sw[1] << " element " << i % sw[1];
}

TEST(Shard, BenchClassifyShardsEmbedAndTheClassificationReadsThem) {
    test::TempDir d;
    const std::string base = "bench classify -m " + reasoner() +
                             " -t 1 -fa off --no-datasets --arith 6 --n-experiments 2 --sources kv,random";
    Outcome o = cli(base + " --json " + d.path + "/whole.json");
    ASSERT_EQ(o.rc, 0) << o.out;
    const std::string dir = d.path + "/emb";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    run_together({base + " --shard 0/3 --embed-dir " + dir, base + " --shard 1/3 --embed-dir " + dir,
                  base + " --shard 2/3 --embed-dir " + dir},
                 d.path);
    EXPECT_TRUE(test::file_exists(dir + "/arith_level.kv.1-of-3.npy"));
    o = cli(base + " --embed-dir " + dir + " --json " + d.path + "/merged.json");
    ASSERT_EQ(o.rc, 0) << o.out;
    auto strip = [](json j) {
        for (auto & r : j["results"]) r.erase("embed_seconds");
        return j;
    };
    EXPECT_EQ(strip(json::parse(slurp(d.path + "/merged.json"))).dump(), strip(json::parse(slurp(d.path + "/whole.json"))).dump());

    // the classification refuses shards of other settings, and a pass whose shard is missing
    o = cli(base + " --embed-dir " + dir + " --layers last:2");
    expect_one_clear_error(o, "embeddings of another run");
    ASSERT_EQ(unlink((dir + "/arith_level.random.2-of-3.npy").c_str()), 0);
    o = cli(base + " --embed-dir " + dir);
    expect_one_clear_error(o, "shard 2/3 is missing");
    expect_one_clear_error(cli(base + " --shard 0/3"), "--shard needs --embed-dir");
}

// ---- resume ----------------------------------------------------------------------------------------------------

TEST(Shard, AShardResumesIntoItsOwnOutput) {
    test::TempDir d;
    ASSERT_EQ(cli("arith -n 12 --seed 6 -o " + d.path + "/q.jsonl").rc, 0);
    Sharded s = run_sharded(coe_args(d.path + "/q.jsonl"), d.path, 3);
    // shard 1 "killed": its last record torn in half, the one before lost
    const std::string full = slurp(s.shards[1]);
    size_t cut = full.rfind('\n', full.size() - 2);
    cut = full.rfind('\n', cut - 1);
    const size_t next = full.find('\n', cut + 1);
    write_file(s.shards[1], full.substr(0, cut + 1) + full.substr(cut + 1, (next - cut) / 2));
    const std::string merged2 = d.path + "/merged2.jsonl";
    expect_one_clear_error(cli("merge -o " + merged2 + " " + s.shards[0] + " " + s.shards[1] + " " + s.shards[2]), "torn last line");
    EXPECT_FALSE(test::file_exists(merged2));
    // rerun that shard into its own file: it resumes (the torn line cut, the missing records run)
    Outcome o = cli(coe_args(d.path + "/q.jsonl") + " --shard 1/3 -o " + s.shards[1]);
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("(2 new)"), std::string::npos) << o.out;
    o = cli("merge -o " + merged2 + " " + s.shards[0] + " " + s.shards[1] + " " + s.shards[2]);
    ASSERT_EQ(o.rc, 0) << o.out;
    expect_same_records(merged2, s.whole);
    // another shard's settings into this file: refused, not mixed
    expect_one_clear_error(cli(coe_args(d.path + "/q.jsonl") + " --shard 2/3 -o " + s.shards[1]), "shard 1/3, now 2/3");
}

TEST(Shard, ProbePrepShardResumesAfterATornLine) {
    test::TempDir d;
    const std::string base = "probe prep -m " + reasoner() + " -t 1 --arith 6 --fast-cap 32 --slow-cap 224 --seq-len 32";
    Sharded s = run_sharded(base, d.path, 2);
    const std::string full = slurp(s.shards[0]);
    const size_t cut = full.rfind('\n', full.size() - 2);
    write_file(s.shards[0], full.substr(0, cut + 1) + full.substr(cut + 1, 40));  // the last record torn
    Outcome o = cli(base + " --shard 0/2 -o " + s.shards[0]);
    ASSERT_EQ(o.rc, 0) << o.out;
    EXPECT_NE(o.out.find("dropping a torn last line"), std::string::npos) << o.out;
    o = cli("merge -o " + d.path + "/m2.jsonl " + s.shards[0] + " " + s.shards[1]);
    ASSERT_EQ(o.rc, 0) << o.out;
    expect_same_records(d.path + "/m2.jsonl", s.whole);
}

// ---- refusals --------------------------------------------------------------------------------------------------

TEST(Shard, MergeRefusesMissingDuplicateAndForeignShards) {
    test::TempDir d;
    const std::string q = d.path + "/q.jsonl", q2 = d.path + "/q2.jsonl";
    ASSERT_EQ(cli("arith -n 9 --seed 7 -o " + q).rc, 0);
    ASSERT_EQ(cli("arith -n 9 --seed 8 -o " + q2).rc, 0);
    Sharded s = run_sharded(coe_args(q), d.path, 3);
    const std::string out = d.path + "/out.jsonl";
    auto merge = [&](const std::vector<std::string> & files) {
        std::string a = "merge -o " + out;
        for (auto & f : files) a += " " + f;
        return cli(a);
    };
    auto refused = [&](const std::vector<std::string> & files, const std::string & why) {
        expect_one_clear_error(merge(files), why);
        EXPECT_FALSE(test::file_exists(out)) << "a refused merge wrote " << out;
    };
    const std::string s0 = s.shards[0], s1 = s.shards[1], s2 = s.shards[2];
    refused({s0, s1}, "shard 2/3 is missing");
    refused({s0, s1, s1}, "are both shard 1/3");
    refused({s0, s1, s2, s.whole}, "not a shard output");
    // shards of other data, other settings, another N, another model
    auto shard2 = [&](const std::string & extra, const std::string & data, const std::string & name, const std::string & n = "2/3") {
        const std::string f = d.path + "/" + name + ".jsonl";
        Outcome o = cli(coe_args(data) + extra + " --shard " + n + " -o " + f);
        EXPECT_EQ(o.rc, 0) << o.out;
        return f;
    };
    refused({s0, s1, shard2("", q2, "data")}, "data differs: shard_data");
    refused({s0, s1, shard2(" --limit 8", q, "fewer")}, "data differs: shard_items");
    refused({s0, s1, shard2(" --layers last:2", q, "layers")}, "settings differ: layers");
    refused({s0, s1, shard2("", q, "halves", "1/2")}, "another number of parts");
    {
        // the same model with one weight's lowest byte changed: another fingerprint
        std::string m = slurp(reasoner());
        m[m.size() - 4] ^= 1;
        write_file(d.path + "/m2.gguf", m);
        const std::string f = d.path + "/model.jsonl";
        Outcome o = cli("coe -m " + d.path + "/m2.gguf --data " + q + " --format arith -t 1 --shard 2/3 -o " + f);
        ASSERT_EQ(o.rc, 0) << o.out;
        refused({s0, s1, f}, "model differs");
    }
    // items: one missing (a shard that did not finish), one twice, one of another shard
    const std::string full2 = slurp(s2);
    const std::string first2 = full2.substr(0, full2.find('\n') + 1);
    write_file(d.path + "/short.jsonl", first2);
    refused({s0, s1, d.path + "/short.jsonl"}, "missing from");
    write_file(d.path + "/twice.jsonl", full2 + first2);
    refused({s0, s1, d.path + "/twice.jsonl"}, "twice");
    const std::string full1 = slurp(s1);
    write_file(d.path + "/foreign.jsonl", full2 + full1.substr(0, full1.find('\n') + 1));
    refused({s0, s1, d.path + "/foreign.jsonl"}, "not a record of shard 2/3");
    write_file(d.path + "/empty.jsonl", "");
    refused({s0, s1, d.path + "/empty.jsonl"}, "empty");
    refused({s0, s1, d.path + "/absent.jsonl"}, "cannot read");
    expect_one_clear_error(cli("merge -o " + s0 + " " + s0 + " " + s1 + " " + s2), "is one of the shard files");
    // the refusals left the good shards mergeable, and an existing output is replaced whole
    write_file(out, "old\n");
    ASSERT_EQ(merge({s2, s0, s1}).rc, 0);
    expect_same_records(out, s.whole);
}

TEST(Shard, MergeRefusesStaleOrMismatchedEmbeddingShards) {
    test::TempDir d;
    write_texts(d.path + "/t.jsonl", 7);
    write_texts(d.path + "/t2.jsonl", 8);
    const std::string base = "embed -m " + reasoner() + " -t 1 -fa off";
    Sharded s = run_sharded(base + " -f " + d.path + "/t.jsonl", d.path, 2, "npy");
    const std::string out = d.path + "/out.npy";
    auto refused = [&](const std::string & files, const std::string & why) {
        expect_one_clear_error(cli("merge -o " + out + " " + files), why);
        EXPECT_FALSE(test::file_exists(out));
    };
    refused(s.shards[0], "shard 1/2 is missing");
    refused(s.shards[0] + " " + s.whole, "no manifest");
    // another data file, other pooling
    ASSERT_EQ(cli(base + " -f " + d.path + "/t2.jsonl --shard 1/2 -o " + d.path + "/other.npy").rc, 0);
    refused(s.shards[0] + " " + d.path + "/other.npy", "data differs");
    ASSERT_EQ(cli(base + " -f " + d.path + "/t.jsonl --layers last:2 --shard 1/2 -o " + d.path + "/pool.npy").rc, 0);
    refused(s.shards[0] + " " + d.path + "/pool.npy", "settings differ: pool");
    // a jsonl shard with an npy one
    ASSERT_EQ(cli(base + " -f " + d.path + "/t.jsonl --shard 1/2 -o " + d.path + "/s1.jsonl").rc, 0);
    refused(s.shards[0] + " " + d.path + "/s1.jsonl", "embed-jsonl shard");
    // a shard file changed after its manifest was written
    std::string b = slurp(s.shards[1]);
    b[b.size() - 1] ^= 1;
    write_file(s.shards[1], b);
    refused(s.shards[0] + " " + s.shards[1], "does not match its manifest");
    // an unsharded run into a shard's file removes the stale manifest
    ASSERT_EQ(cli(base + " -f " + d.path + "/t.jsonl -o " + s.shards[1]).rc, 0);
    EXPECT_FALSE(test::file_exists(s.shards[1] + ".shard.json"));
}

TEST(Shard, BadShardSpecsAreOneErrorLine) {
    test::TempDir d;
    ASSERT_EQ(cli("arith -n 4 --seed 1 -o " + d.path + "/q.jsonl").rc, 0);
    write_texts(d.path + "/t.jsonl", 4);
    const std::vector<std::string> cmds = {
        coe_args(d.path + "/q.jsonl") + " -o " + d.path + "/o.jsonl",
        "think -m " + reasoner() + " --arith 4 -t 1 -o " + d.path + "/o.jsonl",
        "probe prep -m " + reasoner() + " --arith 4 -t 1 -o " + d.path + "/o.jsonl",
        "embed -m " + reasoner() + " -f " + d.path + "/t.jsonl -o " + d.path + "/o.npy",
        "bench classify -m " + reasoner() + " --no-datasets --arith 2 --embed-dir " + d.path};
    for (const auto & c : cmds) {
        for (const char * bad : {"3/3", "1/0", "-1/2", "a/b", "0/", "1", "0/2/3", "''", "1/2x"}) {
            SCOPED_TRACE(c + " --shard " + bad);
            expect_one_clear_error(cli(c + " --shard " + bad), "--shard");
        }
    }
    EXPECT_FALSE(test::file_exists(d.path + "/o.jsonl"));
    // more shards than items: a shard would be empty
    expect_one_clear_error(cli(cmds[0] + " --shard 0/5"), "would leave a shard empty");
    expect_one_clear_error(cli("think -m " + reasoner() + " -p 1+2 -t 1 --shard 0/2"), "--shard needs a set");
    expect_one_clear_error(cli("embed -m " + reasoner() + " -p hello --shard 0/2"), "--shard needs -f FILE and -o");
    // merge is a listed command
    Outcome o = cli("--help");
    EXPECT_NE(o.out.find("merge"), std::string::npos) << o.out;
    expect_one_clear_error(cli("merge -o " + d.path + "/m.jsonl " + d.path + "/q.jsonl"), "not a shard output");
}

}  // namespace
}  // namespace kvlens
