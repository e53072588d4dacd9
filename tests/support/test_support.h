// Helpers shared by kvlens tests: where the shared data lives, skipping when it is absent.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <sys/stat.h>

namespace kvlens::test {

inline std::string shared_dir() { return KVLENS_SHARED_DIR; }
inline bool file_exists(const std::string & p) {
    struct stat st{};
    return stat(p.c_str(), &st) == 0;
}
inline std::string stories_gguf() { return shared_dir() + "/data/models/stories260K/stories260K.gguf"; }
inline std::string llama_dir() { return KVLENS_LLAMA_DIR; }
inline std::string source_dir() { return KVLENS_SOURCE_DIR; }
inline std::string kvlens_bin() { return KVLENS_BIN; }

// Run a shell command, capturing stdout+stderr; returns the exit status.
int run(const std::string & cmd, std::string * out = nullptr);

// A whole file's bytes ("" when it cannot be read).
std::string slurp(const std::string & path);

// A free TCP port on 127.0.0.1 (bound, read back, released).
int free_port();

// A command that failed on bad input: exit status 1 (any failure short of a signal when !exit_1), and its whole
// output is one line "kvlens: error: ..." containing needle.
void expect_one_clear_error(int rc, const std::string & out, const std::string & needle, bool exit_1 = true);

// A temporary directory removed at destruction.
struct TempDir {
    std::string path;
    TempDir();
    ~TempDir();
};

}  // namespace kvlens::test

#define KVLENS_REQUIRE_FILE(p)                                                                          \
    do {                                                                                                \
        if (!::kvlens::test::file_exists(p)) GTEST_SKIP() << "skipped: " << (p) << " is absent (needs ../shared)"; \
    } while (0)
