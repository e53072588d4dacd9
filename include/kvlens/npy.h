// Tiny .npy (NumPy format 1.0) writer/reader for float32 C-order arrays — embeddings, KV dumps.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace kvlens {

// Write `data` (prod(shape) floats, row-major) as a little-endian '<f4' array. Throws kvlens::Error on I/O failure.
void write_npy(const std::string & path, const float * data, const std::vector<size_t> & shape);

// Read a '<f4' C-order .npy written by write_npy (or NumPy); shape is filled in. Throws kvlens::Error otherwise.
std::vector<float> read_npy(const std::string & path, std::vector<size_t> & shape);

}  // namespace kvlens
