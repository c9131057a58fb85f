# cpack.cmake - the Debian package of dfsr (CPack's DEB generator).
#
# Included at the end of CMakeLists.txt, after the install() rules. packaging/build-deb.sh
# configures a Release build with CMAKE_INSTALL_PREFIX=/usr and runs cpack, producing
# build-release/dfsr_<version>_<arch>.deb. The runtime dependencies are Debian 12's
# (bookworm) package names for the shared libraries the program links.

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "dfsr")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "dfsr developers")
set(CPACK_PACKAGE_CONTACT "dfsr developers <dfsr-devel@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "DFS Replication for Linux: replicated folders over a journaling FUSE mount")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
# Absolute destinations (the systemd units in /lib/systemd/system) go through DESTDIR.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME "dfsr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # dfsr_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "dfsr developers <dfsr-devel@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "fuse3, libfuse3-3 (>= 3.10), librocksdb7.8, libsodium23, libuv1, libzstd1, libssl3, libprotobuf-c1, libinih1, libxml2")
# CPack writes the summary as the first line and indents these lines itself (an empty line
# becomes " ."), so the text below has no leading blanks.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "dfsr brings the semantics of Windows DFS Replication to Linux. A member
mounts a FUSE view of an ordinary directory and records every change made
through it (create, write on close, rename, delete, permissions, xattrs and
ACLs) in a RocksDB journal, with a hidden root-only DfsrPrivate folder for
the database, staging, and the conflict losers and deleted files it keeps.

Members replicate multi-master over an authenticated, encrypted channel
(libsodium): content-defined chunks are staged compressed and only the
chunks a partner lacks travel; conflicts resolve the same way on every
member and the losers are kept; preseeded files are recognised by hash and
not sent again. systemd units (dfsr.service, dfsr@.service), journald
events with DFSR's ids, and the dfsr(1) and dfsr.conf(5) man pages.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_LIST_DIR}/debian/postinst;${CMAKE_CURRENT_LIST_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
