// cpp-httplib as vendored in the pinned llama.cpp (vendor/cpp-httplib), with the settings that library is compiled
// with (vendor/cpp-httplib/CMakeLists.txt): every kvlens file that uses httplib includes it through here, so the
// inline code of all of them agrees with the compiled library (one definition rule).
#pragma once
#define CPPHTTPLIB_FORM_URL_ENCODED_PAYLOAD_MAX_LENGTH 1048576
#define CPPHTTPLIB_LISTEN_BACKLOG 512
#define CPPHTTPLIB_REQUEST_URI_MAX_LENGTH 32768
#define CPPHTTPLIB_TCP_NODELAY 1
#include <cpp-httplib/httplib.h>
