// Every numeric flag of every kvlens command checked before any work starts: one table of ranges (validate.cpp),
// NaN-safe (NaN and inf fail every check), applied by cli::parse; plus the checks shared by all commands
// (-p with -f, -f naming a folder, -t above the core count) and the defaults shown in --help.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace kvlens::cli {

// Before parsing: attach the range validators (a flag's rule for this command, else its rule for every command;
// floating-point flags without a rule must at least be finite) and show every default in --help.
void add_flag_rules(CLI::App & app);

// After parsing: the checks between flags. Throws kvlens::Error.
void check_parsed(const CLI::App & app);

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(const std::string & s);

// Comma-separated lists given to flags; one error line names the flag.
// Finite numbers (--give-up 50,70, --sweep-tau ...): "nan", "inf", "5x" and empty items are refused.
std::vector<double> parse_numbers(const std::string & s, const char * flag);
// Positive integers (--npl 1,2,4, --clients 1,4,8).
std::vector<int> parse_ints(const std::string & s, const char * flag);

}  // namespace kvlens::cli
