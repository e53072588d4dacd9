// Whole output files, written so that a failure never leaves a half-written file behind: the data goes to a
// temporary file in the target's folder, every write, flush and close is checked, and only then is it renamed over
// the target (POSIX rename is atomic). Also: checking that an output path can be written BEFORE long work starts.
#pragma once
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace kvlens {

// Write `path` as a whole: `fill` writes into a FILE* (use write_all / check ferror). On any failure (an exception
// from `fill`, a short write, a full disk at flush or close, the rename) the temporary file is removed and a
// kvlens::Error is thrown: `path` keeps its old content, or stays absent. A `path` that exists and is not a regular
// file (/dev/stdout, /dev/full, a fifo) is written in place, with the same checks; a symlink is followed.
void write_file_atomic(const std::string & path, const std::function<void(FILE *)> & fill);
void write_text_atomic(const std::string & path, const std::string & text);

// fwrite that throws kvlens::Error ("write failed: PATH: <strerror>") on a short write.
void write_all(FILE * f, const void * data, size_t n, const std::string & path);

// Fail early: throws kvlens::Error unless a file can be created (or appended to) at `path`: its folder exists and is
// writable and `path` is not a folder. Creates nothing that stays. "-" (stdout) passes.
void check_writable(const std::string & path);

// Flush and check a stream the CLI wrote to (stdout): throws kvlens::Error("cannot write to WHAT: <strerror>").
void check_stream(FILE * f, const std::string & what);

}  // namespace kvlens
