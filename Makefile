# Builds nixrun and installs it with its unit, start script, completions and
# man pages: `make` as a user, then `make install` as root (install does not
# build, so that root never runs cargo in the checkout).
#
#   make install PREFIX=/usr            # distribution layout
#   make install DESTDIR=/tmp/stage     # staged, for packaging
#   make install RELEASE_DIR=path       # binaries built elsewhere
#
# Paths in the unit are rewritten to the chosen PREFIX; the conf directory
# stays /etc/nixrun (the unit's EnvironmentFile=).

CARGO ?= cargo
# .cargo/config.toml names this target (see there), so the binaries land below it.
TARGET ?= x86_64-unknown-linux-gnu
RELEASE_DIR ?= target/$(TARGET)/release
GENDOC ?= $(RELEASE_DIR)/nixrun-gendoc

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
PKGLIBDIR ?= $(LIBDIR)/nixrun
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/nixrun
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
UNITDIR ?= /etc/systemd/system
CONFDIR = /etc/nixrun

INSTALL ?= install
BINS = nixrun nixrunctl

.PHONY: all install uninstall

all:
	$(CARGO) build --release --package nixrun --package nixrun-gendoc

install:
	@for f in $(BINS:%=$(RELEASE_DIR)/%) $(GENDOC); do \
		[ -x "$$f" ] || { echo "make install: $$f not found: run make first (or set RELEASE_DIR=)" >&2; exit 1; }; \
	done
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(CONFDIR) \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	$(INSTALL) -m 0755 $(BINS:%=$(RELEASE_DIR)/%) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0755 packaging/nixrun-container-start packaging/nixrun-container-init \
		$(DESTDIR)$(PKGLIBDIR)/
	sed -e 's|/usr/lib/nixrun/|$(PKGLIBDIR)/|g' -e 's|/usr/bin/|$(BINDIR)/|g' \
		packaging/nixrun@.service >$(DESTDIR)$(UNITDIR)/nixrun@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/nixrun@.service
	$(INSTALL) -m 0644 packaging/example.conf packaging/README.md $(DESTDIR)$(DOCDIR)/
	@# Generated into a scratch directory: install may run as root in a
	@# checkout that belongs to someone else.
	set -e; gen=$$(mktemp -d); trap 'rm -rf "$$gen"' EXIT; \
	$(GENDOC) "$$gen"; \
	$(INSTALL) -m 0644 "$$gen"/man1/*.1 $(DESTDIR)$(MANDIR)/man1/; \
	for b in $(BINS); do \
		$(INSTALL) -m 0644 "$$gen/bash/$$b" $(DESTDIR)$(BASHCOMPDIR)/$$b; \
		$(INSTALL) -m 0644 "$$gen/zsh/_$$b" $(DESTDIR)$(ZSHCOMPDIR)/_$$b; \
		$(INSTALL) -m 0644 "$$gen/fish/$$b.fish" $(DESTDIR)$(FISHCOMPDIR)/$$b.fish; \
	done

# The conf directory and its files are the administrator's: left in place.
uninstall:
	rm -f $(BINS:%=$(DESTDIR)$(BINDIR)/%) \
		$(DESTDIR)$(PKGLIBDIR)/nixrun-container-start \
		$(DESTDIR)$(PKGLIBDIR)/nixrun-container-init \
		$(DESTDIR)$(UNITDIR)/nixrun@.service \
		$(DESTDIR)$(MANDIR)/man1/nixrun.1 $(DESTDIR)$(MANDIR)/man1/nixrunctl.1 \
		$(DESTDIR)$(MANDIR)/man1/nixrunctl-*.1 \
		$(DESTDIR)$(DOCDIR)/example.conf $(DESTDIR)$(DOCDIR)/README.md \
		$(BINS:%=$(DESTDIR)$(BASHCOMPDIR)/%) $(BINS:%=$(DESTDIR)$(ZSHCOMPDIR)/_%) \
		$(BINS:%=$(DESTDIR)$(FISHCOMPDIR)/%.fish)
	rmdir $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(DOCDIR) 2>/dev/null || true
