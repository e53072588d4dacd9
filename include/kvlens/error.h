// kvlens reports bad input as kvlens::Error: one clear line, caught by the CLI, never an abort.
#pragma once
#include <stdexcept>
#include <string>

namespace kvlens {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace kvlens
