// .npy format 1.0: magic "\x93NUMPY", version 1.0, uint16 header length, a Python-dict header padded with
// spaces and a newline so that the data starts on a 64-byte boundary, then the raw little-endian data.
#include "kvlens/npy.h"

#include <cstdint>
#include <cstring>
#include <fstream>

#include "kvlens/atomic_file.h"
#include "kvlens/error.h"

namespace kvlens {

void write_npy(const std::string & path, const float * data, const std::vector<size_t> & shape) {
    std::string dims;
    size_t n = 1;
    for (size_t d : shape) {
        dims += std::to_string(d) + ",";
        n *= d;
    }
    if (shape.size() > 1) dims.pop_back();  // "(3,)" for 1-d, "(3,4)" otherwise
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    // whole file or nothing (kvlens/atomic_file.h): a failed write never leaves a torn .npy behind
    write_file_atomic(path, [&](FILE * f) {
        const char magic[] = "\x93NUMPY\x01\x00";
        write_all(f, magic, 8, path);
        uint16_t hl = (uint16_t) header.size();
        unsigned char hlb[2] = {(unsigned char) (hl & 0xff), (unsigned char) (hl >> 8)};
        write_all(f, hlb, 2, path);
        write_all(f, header.data(), header.size(), path);
        write_all(f, data, n * sizeof(float), path);  // host is little-endian (x86/arm)
    });
}

std::vector<float> read_npy(const std::string & path, std::vector<size_t> & shape) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error("cannot read " + path);
    char magic[10];
    if (!f.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
    size_t hl;
    if (magic[6] == 1) {
        hl = (unsigned char) magic[8] | ((unsigned char) magic[9] << 8);
    } else {
        unsigned char b[2];
        f.read((char *) b, 2);
        hl = (unsigned char) magic[8] | ((unsigned char) magic[9] << 8) | (b[0] << 16) | (b[1] << 24);
    }
    // sizes come from the file: check them against its length before allocating anything
    const std::streampos here = f.tellg();
    f.seekg(0, std::ios::end);
    const size_t file_size = (size_t) f.tellg();
    f.seekg(here);
    if (!f || hl > file_size - (size_t) here) throw Error(path + ": truncated .npy header");
    std::string header(hl, ' ');
    f.read(header.data(), (std::streamsize) hl);
    if (!f) throw Error(path + ": truncated .npy header");
    const size_t data_bytes = file_size - (size_t) f.tellg();
    if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos) {
        throw Error(path + ": only little-endian float32 C-order arrays are supported");
    }
    size_t a = header.find('('), b = header.find(')');
    if (a == std::string::npos || b == std::string::npos) throw Error(path + ": bad .npy header");
    shape.clear();
    size_t n = 1;
    std::string dims = header.substr(a + 1, b - a - 1);
    size_t p = 0;
    while (p < dims.size()) {
        while (p < dims.size() && (dims[p] == ' ' || dims[p] == ',')) ++p;
        if (p >= dims.size()) break;
        size_t q = p;
        while (q < dims.size() && dims[q] >= '0' && dims[q] <= '9') ++q;
        if (q == p || q - p > 15) throw Error(path + ": bad .npy shape");
        shape.push_back(std::stoull(dims.substr(p, q - p)));
        if (shape.back() != 0 && n > data_bytes / sizeof(float) / shape.back())
            throw Error(path + ": the .npy shape holds more values than the file");
        n *= shape.back();
        p = q;
    }
    if (n * sizeof(float) > data_bytes) throw Error(path + ": truncated .npy");
    std::vector<float> data(n);
    if (!f.read((char *) data.data(), (std::streamsize) (n * sizeof(float)))) throw Error(path + ": truncated .npy");
    return data;
}

}  // namespace kvlens
