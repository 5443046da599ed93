# gemma4c build. Plain make; sources are picked up by wildcard so adding a file
# to a src/ subfolder needs no edit here.
#
#   make            release build: build/gemma4c, build/libgemma4c.a
#   make test       build and run every test (ends with "N passed, N failed")
#   make asan       the same tests under AddressSanitizer + UBSan (build-asan/)
#   make fuzz       libFuzzer targets (clang), in build-fuzz/

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -march=x86-64-v2 -mtune=native
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
              -Iinclude -Isrc -pthread
CFLAGS  ?= $(OPT) -g
LIBS    = -ljansson -ledit -lm -pthread $(MEDIA_LIBS)
# Image decoders of src/media/image.c, all Debian-packaged (not stb_image: its
# Debian 12 version has an open CVE for untrusted input, and every media file
# is hostile input): libspng (PNG: small, no setjmp, size limits before
# allocation), libjpeg-turbo (JPEG: the decoder PIL itself uses, so pixels
# match the reference), libwebp (WebP), giflib (GIF), libexif (EXIF
# orientation of JPEG). src/media/video.c: FFmpeg's libavformat/libavcodec
# (every container and codec, animated GIF included) and libswscale (frames to
# RGB), not linked: dlopen'ed by soname on the first video file, since linking
# them cost every process ~23 MiB (their headers still build video.c).
# Audio of src/media/audio.c: libsndfile decodes WAV, FLAC, Ogg/Vorbis, Opus
# and MP3 (what librosa reads through soundfile), libsoxr resamples to 16 kHz
# (librosa's default resampler: transformers' load_audio via librosa).
MEDIA_LIBS = -lspng -ljpeg -lwebp -lgif -lexif -lsndfile -lsoxr
# gemma4c serve's HTTP (server/http.c says why libmicrohttpd); the binary only
SERVER_LIBS = -lmicrohttpd

LIB_SRC  := $(sort $(wildcard src/*/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c server/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/bench_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

all: $(BUILD)/gemma4c $(TEST_BIN) $(BENCH_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(KFLAGS) -MMD -MP -c $< -o $@

# UBSan's instrumentation of the fully unrolled AVX-512 tile kernels makes
# clang 14 spend over ten minutes per file; these keep ASan (the bounds
# checks that matter for kernels) and skip UBSan in the sanitizer build.
SIMD_HEAVY := src/tensor/quant_avx512_k.c src/tensor/quant_avx512_q.c src/tensor/quant_avx512_p.c src/tensor/quant_x86_legacy.c
$(SIMD_HEAVY:%.c=build-asan/%.o): KFLAGS = -fno-sanitize=undefined

$(BUILD)/libgemma4c.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# gemma4c serve's chat page (server/page.html) as a C array in the binary:
# nothing to install, no build step for users
PAGE_OBJ := $(BUILD)/gen/page_html.o
$(BUILD)/gen/page_html.c: server/page.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from server/page.html by the Makefile */'; echo 'const unsigned char g4_page_html[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0 };'; \
	  echo 'const unsigned long g4_page_html_len = sizeof g4_page_html - 1;'; } >$@
$(PAGE_OBJ): $(BUILD)/gen/page_html.c
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@

$(BUILD)/gemma4c: $(CLI_OBJ) $(PAGE_OBJ) $(BUILD)/libgemma4c.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(PAGE_OBJ) $(BUILD)/libgemma4c.a $(LIBS) $(SERVER_LIBS)

$(BUILD)/tests/%: tests/%.c tests/harness.h $(BUILD)/libgemma4c.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libgemma4c.a $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libgemma4c.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libgemma4c.a $(LIBS)

test: all
	BUILD=$(BUILD) bash tests/run.sh

asan:
	$(MAKE) BUILD=build-asan CC=clang OPT="-O1 -fno-omit-frame-pointer" \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" test

FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
# The library is compiled once with the fuzzers' instrumentation (not once
# per fuzzer: with six fuzzers that was ~14 minutes of CI), then each
# fuzzer links against it. The SIMD_HEAVY files skip UBSan as in asan.
FUZZ_CC     = clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc
FUZZ_OBJ   := $(LIB_SRC:src/%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer-no-link,address,undefined $(FKFLAGS) -MMD -MP -c $< -o $@
$(SIMD_HEAVY:src/%.c=build-fuzz/obj/%.o): FKFLAGS = -fno-sanitize=undefined
build-fuzz/libfuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/fuzz_%: fuzz/fuzz_%.c build-fuzz/libfuzz.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $< build-fuzz/libfuzz.a $(LIBS)
# the server's request conversion has no socket: its source links in directly
build-fuzz/fuzz_request: fuzz/fuzz_request.c server/convert.c server/convert.h build-fuzz/libfuzz.a
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ fuzz/fuzz_request.c server/convert.c build-fuzz/libfuzz.a $(LIBS)
fuzz: $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
-include $(FUZZ_OBJ:.o=.d)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

.PHONY: all test asan fuzz clean

# The main job on the default model: models/gemma4c-mini.gguf, a 1.7M-parameter
# Gemma 4 (sliding + full layers, PLE, KV sharing) trained by `gemma4c train`
# on WordNet glosses of 301 concrete nouns asked in 12 phrasings
# (scripts/train_demo.sh remakes it; README "The default model"). Greedy, so
# the answer is the one tests/sh/demo.sh checks.
DEMO_MODEL ?= models/gemma4c-mini.gguf
DEMO_PROMPT ?= What is a guitar?
demo: $(BUILD)/gemma4c
	@[ -f $(DEMO_MODEL) ] || { echo "$(DEMO_MODEL) is missing (scripts/train_demo.sh makes it)"; exit 1; }
	$(BUILD)/gemma4c info -m $(DEMO_MODEL) --ctx 1024
	$(BUILD)/gemma4c run -m $(DEMO_MODEL) -p "$(DEMO_PROMPT)" -n 64 --greedy

# The server on the default model: OpenAI API at http://127.0.0.1:8080/v1,
# Ollama API at http://127.0.0.1:8080, the chat page at http://127.0.0.1:8080/.
serve: $(BUILD)/gemma4c
	@[ -f $(DEMO_MODEL) ] || { echo "$(DEMO_MODEL) is missing (scripts/train_demo.sh makes it)"; exit 1; }
	$(BUILD)/gemma4c serve -m $(DEMO_MODEL) $(SERVE_ARGS)

.PHONY: demo serve
