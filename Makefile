# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#
# bsteer build: bpf/%.bpf.c -> build/bpf/%.bpf.o -> build/%.skel.h, then the
# userspace objects that include those skeletons. Quiet by default; V=1
# prints the full commands.

OUTPUT     ?= build
CLANG      ?= clang-19
LLVM_STRIP ?= llvm-strip-19
BPFTOOL    ?= bpftool
CC         ?= gcc
ARCH       := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

CFLAGS     ?= -g -O2
CFLAGS     += -Wall -Wextra -Werror -Wno-format-truncation -std=gnu11 -D_GNU_SOURCE \
	      -Iinclude -I$(OUTPUT) -Iuser -MMD -MP $(EXTRA_CFLAGS)
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
# make install puts the policies' BPF objects (for bpftool, and what
# 'bsteer policy swap --dry-run' prints) in LIBDIR, found from the binary
# as ../lib/bsteer: keep LIBDIR at BINDIR/../lib/bsteer.
LIBDIR     ?= $(PREFIX)/lib/bsteer
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
UNITS      := $(OUTPUT)/systemd/bsteer@.service $(OUTPUT)/systemd/bsteer@.socket
LDLIBS     += -lxdp -lbpf -luring -lelf -lz -lpthread -lmicrohttpd -lsystemd -lgnutls -lrbd -lrados
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall \
	      -Wno-unused-function -I. -Iinclude -Ibpf

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# BPF programs: bpf/ holds the core hooks and the headers every program
# shares; the modules are in bpf/frontend/ (header parsers), bpf/policy/
# (the policies built into the binary) and bpf/trace/ (the lifetime
# tracer). Each is built to build/bpf/NAME.bpf.o and build/NAME.skel.h.
BPF_CORE     := \
	access \
	core
BPF_FRONTEND := \
	fuse \
	nbd
BPF_POLICY   := \
	cow \
	mirror \
	passthrough \
	redirect \
	stripe
BPF_TRACE    := trace
# Variants built from another program's source (see below).
BPF_VARIANTS := \
	mirror_lif \
	mirror_rr
BPF_APPS := $(BPF_CORE) $(BPF_FRONTEND) $(BPF_POLICY) $(BPF_TRACE) $(BPF_VARIANTS)

# Policies that selftests load from files; they misbehave on purpose.
TEST_PROGS := \
	bad_dir \
	bad_dup \
	bad_forge \
	bad_frontend \
	bad_idle \
	bad_len \
	bad_loop \
	bad_owner \
	bad_reply \
	bad_slot \
	bad_target \
	bad_verifier \
	stale \
	stale_slot

# Userspace, by folder: core/ (instance, loader, slot pool, executor,
# ring, server), frontend/, target/, policy/ (the policies' userspace
# halves), trace/ (the tracer), cli/ (the command line).
LIB_OBJS := \
	core/abi_check \
	core/access \
	core/copy \
	core/exec \
	core/instance \
	core/legs \
	core/loader \
	core/modules \
	core/pins \
	core/pool \
	core/request \
	core/resync \
	core/ring \
	core/server \
	core/uring \
	core/util \
	frontend/fuse_answer \
	frontend/fuse_mount \
	frontend/fuse_ring \
	frontend/nbd_conn \
	frontend/nbd_negotiate \
	frontend/nbd_reply \
	frontend/nbd_request \
	frontend/nbd_tls \
	frontend/registry \
	policy/cfg \
	policy/cow \
	policy/cowmap \
	policy/redirect \
	policy/registry \
	target/file \
	target/file_direct \
	target/file_inline \
	target/nbd \
	target/nbd_client \
	target/nbd_rmw \
	target/nbd_tls \
	target/rbd \
	target/registry \
	trace/json \
	trace/live \
	trace/model \
	trace/procs \
	trace/report \
	trace/session \
	trace/tracer \
	wire/nbd_wire \
	wire/tls_stream \
	wire/tls_tunnel

CLI_OBJS := \
	cli/access \
	cli/args \
	cli/copy \
	cli/cow \
	cli/leg \
	cli/list \
	cli/main \
	cli/metrics \
	cli/policy \
	cli/resync \
	cli/serve \
	cli/signals \
	cli/stat \
	cli/trace

TESTS := \
	test_bad_policy \
	test_fuse_abi \
	test_lease \
	test_nbd_parser \
	test_prefixed_send \
	test_splice_contract

BPF_OBJS  := $(patsubst %,$(OUTPUT)/bpf/%.bpf.o,$(BPF_APPS))
SKELS     := $(patsubst %,$(OUTPUT)/%.skel.h,$(BPF_APPS))
LIB       := $(OUTPUT)/libbsteer.a
BIN       := $(OUTPUT)/bsteer
TEST_BPF  := $(patsubst %,$(OUTPUT)/selftests/progs/%.bpf.o,$(TEST_PROGS))
TEST_BINS := $(patsubst %,$(OUTPUT)/selftests/%,$(TESTS))
# Programs the shell tests run (not tests themselves: no test_ prefix).
TEST_HELPERS := $(patsubst %,$(OUTPUT)/selftests/%,trace_prog)
BPF_HDRS  := $(wildcard bpf/*.bpf.h) $(wildcard include/*.h) vmlinux.h
# Man pages: docs/man/NAME.SECTION.scd -> build/man/NAME.SECTION (scdoc).
MAN_PAGES := $(patsubst docs/man/%.scd,$(OUTPUT)/man/%,$(wildcard docs/man/*.scd))

.DELETE_ON_ERROR:
.SECONDARY: $(SKELS) $(BPF_OBJS)
.PHONY: all clean test test-asan asan fuzz deps vmlinux run lint man install uninstall FORCE

all: $(BIN) $(BPF_OBJS) $(TEST_BPF) $(TEST_BINS) $(TEST_HELPERS) $(UNITS) man

# Man pages, for make install to take from $(OUTPUT)/man/*.[78].
man: $(MAN_PAGES)

$(OUTPUT)/man/%: docs/man/%.scd | $(OUTPUT)/man
	$(call msg,SCDOC,$@)
	$(Q)scdoc < $< > $@

# systemd units, with the path the binary is installed at; made again
# when BINDIR changes (build/systemd/bindir holds the last one).
$(OUTPUT)/systemd/bindir: FORCE
	$(Q)mkdir -p $(@D)
	$(Q)echo '$(BINDIR)' >$@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv -f $@.tmp $@
$(OUTPUT)/systemd/bsteer@.service: user/systemd/bsteer@.service.in $(OUTPUT)/systemd/bindir | $(OUTPUT)
	$(Q)mkdir -p $(@D)
	$(Q)sed 's|@BINDIR@|$(BINDIR)|g' $< >$@
$(OUTPUT)/systemd/bsteer@.socket: user/systemd/bsteer@.socket | $(OUTPUT)
	$(Q)mkdir -p $(@D)
	$(Q)cp $< $@

$(OUTPUT) $(OUTPUT)/bpf $(OUTPUT)/man $(OUTPUT)/selftests $(OUTPUT)/selftests/progs:
	$(Q)mkdir -p $@

define bpf_rule
$(OUTPUT)/bpf/%.bpf.o: bpf/$(1)%.bpf.c $(BPF_HDRS) | $(OUTPUT)/bpf
	$$(call msg,BPF,$$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $$< -o $$@
endef
$(eval $(call bpf_rule,))
$(foreach d,frontend policy trace,$(eval $(call bpf_rule,$(d)/)))

# Mirror variants: one source, a different default read mode each.
$(OUTPUT)/bpf/mirror_rr.bpf.o: bpf/policy/mirror.bpf.c $(BPF_HDRS) | $(OUTPUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -DMIRROR_NAME=mirror_rr \
		-DMIRROR_ID=BSTEER_POL_MIRROR_RR -DMIRROR_READ=MIRROR_READ_RR -c $< -o $@

$(OUTPUT)/bpf/mirror_lif.bpf.o: bpf/policy/mirror.bpf.c $(BPF_HDRS) | $(OUTPUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -DMIRROR_NAME=mirror_lif \
		-DMIRROR_ID=BSTEER_POL_MIRROR_LIF -DMIRROR_READ=MIRROR_READ_LIF -c $< -o $@

$(OUTPUT)/selftests/progs/%.bpf.o: selftests/progs/%.bpf.c $(BPF_HDRS) | $(OUTPUT)/selftests/progs
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/bpf/%.bpf.o | $(OUTPUT)
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@

# The version bsteer --version prints: VERSION, and the commit it was
# built from when built in a git checkout ("0.1.0 (git 162b85b-dirty)").
# build/version.h is rewritten only when that changes.
VERSION_STR := $(shell cat VERSION 2>/dev/null || echo unknown)$(shell \
	d=$$(git describe --always --dirty --abbrev=12 2>/dev/null) && echo " (git $$d)")

$(OUTPUT)/version.h: FORCE | $(OUTPUT)
	$(Q)printf '#define BSTEER_VERSION "%s"\n' '$(VERSION_STR)' > $@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv -f $@.tmp $@

FORCE:

# Header dependencies come from -MMD (build/user/**/*.d); the skeletons
# are made first, so that the first build finds the ones it includes.
$(OUTPUT)/user/%.o: user/%.c | $(SKELS) $(OUTPUT)/version.h
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

-include $(shell find $(OUTPUT)/user $(OUTPUT)/selftests $(OUTPUT)/bench -name '*.d' 2>/dev/null)

$(LIB): $(patsubst %,$(OUTPUT)/user/%.o,$(LIB_OBJS))
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(patsubst %,$(OUTPUT)/user/%.o,$(CLI_OBJS)) $(LIB)
	$(call msg,BINARY,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUTPUT)/selftests/%: selftests/%.c $(LIB) | $(OUTPUT)/selftests
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -Iselftests $< $(LIB) $(LDLIBS) -o $@

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary, the built-in
# policies' BPF objects, the systemd units, the man pages (docs/man/, built
# by scdoc) and the bash completion. make uninstall removes exactly those
# files (and the LIBDIR folder, if it is then empty).
INSTALL      ?= install
INSTALL_BPF  := $(patsubst %,$(OUTPUT)/bpf/%.bpf.o,$(BPF_POLICY) $(BPF_VARIANTS))
COMPLETION   := user/completion/bsteer.bash
MAN8 = $(filter %.8,$(MAN_PAGES))
MAN7 = $(filter %.7,$(MAN_PAGES))
MAN_ALL = $(notdir $(MAN_PAGES))

install: $(BIN) $(INSTALL_BPF) $(UNITS) $(MAN_PAGES)
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(BASHCOMPDIR)
	$(Q)$(INSTALL) -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/bsteer
	$(Q)$(INSTALL) -m 0644 $(INSTALL_BPF) $(DESTDIR)$(LIBDIR)/
	$(Q)$(INSTALL) -m 0644 $(UNITS) $(DESTDIR)$(SYSTEMDUNITDIR)/
	$(Q)$(INSTALL) -m 0644 $(COMPLETION) $(DESTDIR)$(BASHCOMPDIR)/bsteer
	$(if $(MAN8),$(Q)$(INSTALL) -d $(DESTDIR)$(MANDIR)/man8 && \
		$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/)
	$(if $(MAN7),$(Q)$(INSTALL) -d $(DESTDIR)$(MANDIR)/man7 && \
		$(INSTALL) -m 0644 $(MAN7) $(DESTDIR)$(MANDIR)/man7/)

uninstall:
	$(call msg,UNINSTALL,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(BINDIR)/bsteer \
		$(addprefix $(DESTDIR)$(LIBDIR)/,$(notdir $(INSTALL_BPF))) \
		$(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(UNITS))) \
		$(DESTDIR)$(BASHCOMPDIR)/bsteer \
		$(foreach m,$(MAN_ALL),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m))
	$(Q)rmdir $(DESTDIR)$(LIBDIR) 2>/dev/null || true

# Microbenchmarks: "make bench". Not part of "all"; they link the library
# like the CLI does and need root to run (bench/hooks.sh wraps hookbench).
BENCHES    := hookbench floor
BENCH_BINS := $(patsubst %,$(OUTPUT)/bench/%,$(BENCHES))

.PHONY: bench
bench: $(BENCH_BINS)

$(OUTPUT)/bench:
	$(Q)mkdir -p $@

$(OUTPUT)/bench/%: bench/%.c $(LIB) | $(OUTPUT)/bench
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# Builds userspace with ASan and UBSan into build-asan/.
asan:
	$(Q)$(MAKE) OUTPUT=build-asan \
		EXTRA_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"

# libFuzzer over the NBD handshake and request checks: build-fuzz/fuzz_nbd.
# The library is built again with clang, instrumented for the fuzzer.
FUZZ_OUT    := build-fuzz
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all \
	       -Wno-missing-field-initializers

fuzz:
	$(Q)$(MAKE) OUTPUT=$(FUZZ_OUT) CC=$(CLANG) \
		EXTRA_CFLAGS="$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined" \
		$(FUZZ_OUT)/libbsteer.a
	$(call msg,FUZZ,$(FUZZ_OUT)/fuzz_nbd)
	$(Q)$(CLANG) $(filter-out -Werror,$(CFLAGS)) -I$(FUZZ_OUT) $(FUZZ_CFLAGS) \
		-fsanitize=fuzzer,address,undefined selftests/fuzz_nbd.c \
		$(FUZZ_OUT)/libbsteer.a $(LDLIBS) -o $(FUZZ_OUT)/fuzz_nbd

# shellcheck over every shell script, found by its first line (bench/results
# and the build trees left out), and the sourced ones that have none. The
# C build is -Werror already.
lint:
	$(call msg,LINT,shell scripts)
	$(Q)files=$$(grep -rlE --exclude-dir='build*' --exclude-dir=.git \
		--exclude-dir=results '^#!(/usr/bin/env |/bin/)(ba)?sh' . | sort); \
	shellcheck -S warning $$files && \
	shellcheck -S warning -s bash selftests/lib.sh user/completion/bsteer.bash

# Lint, then every test on the plain build, then again on the ASan + UBSan
# build (any sanitizer report aborts the process and fails its test).
test: lint all asan
	$(Q)PASSES="build build-asan" selftests/run.sh

# Only the sanitized pass.
test-asan: asan
	$(Q)PASSES=build-asan selftests/run.sh

# The main job: serve the built-in default export (bsteer-data/default.img,
# 1 GiB sparse) on nbd://127.0.0.1:10809 until SIGINT.
run: all
	$(Q)mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	$(OUTPUT)/bsteer serve

# Every build and test dependency, from Debian's archive. Idempotent.
DEB_PKGS := \
	bc \
	bpftool \
	ceph-common \
	ceph-mgr \
	ceph-mon \
	ceph-osd \
	clang-19 \
	e2fsprogs \
	fio \
	gcc \
	gnuplot-nox \
	gnutls-bin \
	groff-base \
	iperf3 \
	iproute2 \
	jq \
	libbpf-dev \
	libclang-rt-19-dev \
	libelf-dev \
	libgnutls28-dev \
	libmicrohttpd-dev \
	libnbd-bin \
	librbd-dev \
	libsystemd-dev \
	liburing-dev \
	libxdp-dev \
	llvm-19 \
	make \
	man-db \
	nbdkit \
	pkg-config \
	prometheus \
	python3-libnbd \
	qemu-block-extra \
	qemu-system-common \
	qemu-utils \
	scdoc \
	shellcheck \
	systemd \
	valgrind \
	zlib1g-dev

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "all dependencies present"; \
	fi

# Regenerates vmlinux.h from the running kernel's BTF. The committed copy
# came from Linux 6.18 (x86_64).
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

clean:
	$(call msg,CLEAN)
	$(Q)rm -rf $(OUTPUT) build-asan $(FUZZ_OUT)
