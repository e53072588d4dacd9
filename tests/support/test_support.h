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
