# SPDX-License-Identifier: ISC
# cmake -DIN=page.html -DOUT=http_page.c -P embed.cmake: the page as a C
# array (no xxd needed), served from memory by the http module.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from page.html by embed.cmake: do not edit. */\n"
  "const unsigned char http_page[] = {\n${bytes}0x00};\n"
  "const unsigned long http_page_len = ${len};\n")
