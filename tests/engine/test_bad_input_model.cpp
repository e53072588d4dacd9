// Bad input: each case gets one clear error line ("kvlens: error: ...") and a non-zero exit, never an abort.
#include <gtest/gtest.h>

#include <fstream>

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
    EXPECT_NE(o.rc, 0) << o.out;
    EXPECT_LT(o.rc, 128) << "crashed / aborted: " << o.out;
    std::string line = o.out;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    EXPECT_EQ(line.find('\n'), std::string::npos) << "more than one line:\n" << o.out;
    EXPECT_EQ(line.rfind("kvlens: error: ", 0), 0u) << o.out;
    EXPECT_NE(line.find(needle), std::string::npos) << "expected '" << needle << "' in: " << o.out;
}

void write_file(const std::string & path, const std::string & bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string slurp(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

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

}  // namespace
