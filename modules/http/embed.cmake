# SPDX-License-Identifier: ISC
#
# Turn the status page into C source, at build time:
#   cmake -DIN=page.html -DOUT=http_page.c -P embed.cmake
#
# The generated file defines
#   const unsigned char http_page[];    the page, NUL-terminated
#   const unsigned long http_page_len;  its length without the NUL
#   const unsigned long http_page_table_at;   offset of <!--KEEL-TABLE-->
#   const unsigned long http_page_table_end;  offset just after it
#   const char http_page_csp[];         a Content-Security-Policy value
#                                       that allows this page and no more
# Bytes are written as hex (file(READ ... HEX)): no xxd, and no quoting
# of the page's text in a C string.
cmake_minimum_required(VERSION 3.18)

if(NOT IN OR NOT OUT)
  message(FATAL_ERROR "usage: cmake -DIN=page.html -DOUT=http_page.c -P embed.cmake")
endif()

file(READ "${IN}" page)
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")

# The marker must be there exactly once: the module splits the page on it.
set(marker "<!--KEEL-TABLE-->")
string(FIND "${page}" "${marker}" at)
string(FIND "${page}" "${marker}" last REVERSE)
if(at EQUAL -1 OR NOT at EQUAL last)
  message(FATAL_ERROR "${IN}: ${marker} must appear exactly once")
endif()
string(LENGTH "${marker}" mlen)
math(EXPR end "${at} + ${mlen}")

# A SHA-256 digest (hex) in base64, as CSP hash sources want it.
function(hex_base64 hexdigest outvar)
  set(abc "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  string(LENGTH "${hexdigest}" n)
  set(r "")
  set(i 0)
  while(i LESS n)
    string(SUBSTRING "${hexdigest}" ${i} 6 chunk)
    string(LENGTH "${chunk}" clen)
    set(pad "${chunk}000000")
    string(SUBSTRING "${pad}" 0 6 pad)
    math(EXPR v "0x${pad}")
    foreach(shift 18 12 6 0)
      math(EXPR k "(${v} >> ${shift}) & 63")
      string(SUBSTRING "${abc}" ${k} 1 c)
      string(APPEND r "${c}")
    endforeach()
    if(clen EQUAL 4)
      string(REGEX REPLACE ".$" "=" r "${r}")
    elseif(clen EQUAL 2)
      string(REGEX REPLACE "..$" "==" r "${r}")
    endif()
    math(EXPR i "${i} + 6")
  endwhile()
  set(${outvar} "${r}" PARENT_SCOPE)
endfunction()

# The 'sha256-...' source of the one element TAG (script or style).
function(element_hash tag outvar)
  string(FIND "${page}" "<${tag}>" open)
  string(FIND "${page}" "</${tag}>" close)
  string(FIND "${page}" "<${tag}" again REVERSE)
  if(open EQUAL -1 OR close EQUAL -1 OR NOT open EQUAL again)
    message(FATAL_ERROR "${IN}: expected exactly one plain <${tag}> element")
  endif()
  string(LENGTH "<${tag}>" olen)
  math(EXPR from "${open} + ${olen}")
  math(EXPR n "${close} - ${from}")
  string(SUBSTRING "${page}" ${from} ${n} body)
  string(SHA256 digest "${body}")
  hex_base64(${digest} b64)
  set(${outvar} "'sha256-${b64}'" PARENT_SCOPE)
endfunction()

element_hash(script script_hash)
element_hash(style style_hash)
set(csp "default-src 'none'; script-src ${script_hash}; style-src ${style_hash}; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

string(REGEX REPLACE "(..)" "0x\\1," bytes "${hex}")
# CMake's regular expressions have no {16}.
string(REPEAT "0x..," 16 row)
string(REGEX REPLACE "(${row})" "\\1\n" bytes "${bytes}")

get_filename_component(name "${IN}" NAME)
file(WRITE "${OUT}" "/* Generated from ${name} by embed.cmake: do not edit. */
extern const unsigned char http_page[];
extern const unsigned long http_page_len;
extern const unsigned long http_page_table_at;
extern const unsigned long http_page_table_end;
extern const char http_page_csp[];

const unsigned char http_page[] = {
${bytes}0x00
};
const unsigned long http_page_len = ${len};
const unsigned long http_page_table_at = ${at};
const unsigned long http_page_table_end = ${end};
const char http_page_csp[] =
	\"${csp}\";
")
