// Every numeric flag of every kvlens command checked before any work starts: one table of ranges (validate.cpp),
// NaN-safe (NaN and inf fail every check), applied by cli::parse; plus the checks shared by all commands
// (-p with -f, -f naming a folder, -t above the core count) and the defaults shown in --help.
#pragma once
#include <CLI/CLI.hpp>

namespace kvlens::cli {

// Before parsing: attach the range validators (a flag's rule for this command, else its rule for every command;
// floating-point flags without a rule must at least be finite) and show every default in --help.
void add_flag_rules(CLI::App & app);

// After parsing: the checks between flags. Throws kvlens::Error.
void check_parsed(const CLI::App & app);

}  // namespace kvlens::cli
