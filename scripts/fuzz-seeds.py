#!/usr/bin/env python3
"""Writes the fuzz seed corpora under Tests/Fixtures/fuzz/<target>/ from the test
fixtures (pcaps, BGP corpus, example configurations) and a few hand-made inputs in each
target's input format (Sources/Fuzz). Run from the repository root; deterministic."""
import hashlib, os, re, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/Fixtures/fuzz")


def write(target, data):
    directory = os.path.join(OUT, target)
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def pcap_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset = 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        yield data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen


def checksum(header):
    total = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(payload, source, destination, protocol=17):
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, protocol, 0,
                                   bytes(source), bytes(destination)))
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + payload


def ethernet(destination, source, ethertype, payload, vlan=None):
    tag = struct.pack("!HH", 0x8100, vlan) if vlan else b""
    return bytes(destination) + bytes(source) + tag + struct.pack("!H", ethertype) + payload


def ping(source, destination=b"\xff" * 6, vlan=None, size=18):
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"\x5a" * size)
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    return ethernet(destination, source, 0x0800, ipv4(bytes(icmp), [192, 168, 1, 1], [192, 168, 1, 2], 1), vlan)


def arp_request(source, target_ip):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, bytes(source), bytes([192, 168, 1, 1]),
                       b"\0" * 6, bytes(target_ip))
    return ethernet(b"\xff" * 6, source, 0x0806, body)


def vxlan(inner, vni=100, source=(10, 0, 0, 2), flags=0x08):
    udp_payload = struct.pack("!BBHI", flags, 0, 0, vni << 8) + inner
    udp = struct.pack("!HHHH", 50000, 4789, 8 + len(udp_payload), 0) + udp_payload
    return ethernet(b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02", 0x0800, ipv4(udp, source, [10, 0, 0, 1]))


def pipeline():
    # Control byte: ingress (0 eth1, 1 vm1, 2 trunk0, 3 vm3), then two bytes of kernel VLAN tag.
    host_a, host_b = b"\x02\xaa\0\0\0\x01", b"\x02\xaa\0\0\0\x02"
    remote_host = b"\x02\xcc\0\0\0\x09"
    static_remote = b"\x02\xbb\0\0\0\x07"
    for frame in (ping(host_a, host_b), ping(host_a), ping(host_a, remote_host), ping(host_a, static_remote),
                  arp_request(host_a, [192, 168, 1, 2]), ping(host_a, remote_host, size=1472)):
        write("pipeline", b"\x01\0\0" + frame)
    write("pipeline", b"\x02\0\0" + ping(b"\x02\xaa\0\0\0\x03", host_a, vlan=10))
    write("pipeline", b"\x42\x00\x0a" + ping(b"\x02\xaa\0\0\0\x03", host_a))  # VLAN 10 stripped by the kernel
    write("pipeline", b"\x03\0\0" + ping(b"\x02\xaa\0\0\0\x05", b"\x02\xbb\0\0\0\x08"))
    for inner in (ping(remote_host, host_a), ping(remote_host), ping(b"\x02\xcc\0\0\0\x0b", host_b, size=1400)):
        write("pipeline", b"\x00\0\0" + vxlan(inner))
        write("pipeline", b"\x04\0\0" + vxlan(inner))
    write("pipeline", b"\x00\0\0" + vxlan(ping(remote_host, host_a), vni=200, source=(10, 0, 0, 3)))
    for name in ("vxlan-malformed.pcap", "vxlan-real-captures.pcap"):
        for frame in pcap_frames(os.path.join(ROOT, "Tests/Fixtures", name)):
            write("pipeline", b"\x00\0\0" + frame)


def bgp_fixture(path):
    text = open(path).read()
    digits = "".join(re.sub(r"\s", "", line.split("#")[0]) for line in text.splitlines())
    return bytes.fromhex(digits)


def bgp():
    # Control byte: bit 0 four-octet ASNs, bit 1 the eBGP peer.
    directory = os.path.join(ROOT, "Tests/Fixtures/bgp")
    for name in sorted(os.listdir(directory)):
        if name.endswith(".hex"):
            stream = bgp_fixture(os.path.join(directory, name))
            write("bgp", b"\x01" + stream)
    marker = b"\xff" * 16
    path = bytes.fromhex("40010100 400200")
    evpn_reach = bytes.fromhex("800e1c 0019 46 04 c0000201 00 03 11 0001c0000201 0001 00000000 20 c0000201")
    mac_reach = bytes.fromhex(
        "800e2c 0019 46 04 c0000201 00 02 21 0001c00002010001 00000000000000000000 00000000 30 001122334455 00 000064")
    rt = bytes.fromhex("c0100800020000fde9 0064 c010080300000000 0008")
    for attributes in (path + evpn_reach, path + mac_reach + rt, path + evpn_reach + rt):
        body = b"\0\0" + struct.pack("!H", len(attributes)) + attributes
        write("bgp", b"\x01" + marker + struct.pack("!HB", 19 + len(body), 2) + body)
        write("bgp", b"\x03" + marker + struct.pack("!HB", 19 + len(body), 2) + body)


def config():
    for name in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        if name.endswith(".toml"):
            write("config", open(os.path.join(ROOT, "examples", name), "rb").read())
    source = open(os.path.join(ROOT, "Tests/APITests/APITestSite.swift")).read()
    base = re.search(r'static let baseConfig = """\n(.*?)"""', source, re.S).group(1)
    write("config", re.sub(r"^    ", "", base, flags=re.M).replace("SOCKET", "/tmp/api.sock").encode())


def api():
    requests = [
        "GET /v1/site", "GET /v1/fdb?vni=100&mac=02:aa:00:00:00:01&origin=local&limit=2",
        "GET /v1/fdb?cursor=abc", "GET /v1/arp?vni=100", "GET /v1/bridge-domains", "GET /v1/ports",
        "GET /v1/neighbors", "GET /v1/statistics", "GET /v1/bgp", "GET /v1/duplicate-macs?vni=100&mac=02:aa:00:00:00:01",
        "DELETE /v1/duplicate-macs?vni=100", "GET /v1/conflicts?vni=100&kind=ip", "GET /v1/static-macs?vni=100",
        'POST /v1/static-macs\n{"vni": 100, "mac": "02:dd:00:00:00:01", "port": "vm1"}',
        'POST /v1/static-macs\n{"vni": 200, "mac": "02:dd:00:00:00:02", "port": "trunk0.20"}',
        'POST /v1/static-macs\n{"vni": 100, "mac": "02:dd:00:00:00:03", "vtep": "10.0.0.3"}',
        "DELETE /v1/static-macs/100/02:dd:00:00:00:01", "GET /v1/flood?vni=100",
        'POST /v1/flood\n{"vni": 100, "vtep": "10.0.0.9"}', "DELETE /v1/flood/100/10.0.0.9", "POST /v1/reload",
        "GET /v1/networks", 'POST /v1/networks\n{"name": "red", "vni": 300, "ports": ["vm4", "trunk0.30"]}',
        'POST /v1/networks\n{"name": "auto"}', "DELETE /v1/networks/red", "GET /v1/extensions",
        'POST /v1/extensions\n{"network": "red", "sites": ["site-b"]}', "GET /v1/extensions/fuzz.1",
        "DELETE /v1/extensions/fuzz.1", 'POST /v1/extensions/fuzz.1/members\n{"sites": ["site-b"]}',
        "DELETE /v1/extensions/fuzz.1/members/site-b", "GET /metrics",
    ]
    for request in requests:
        write("api", request.encode())


def peering():
    requests = [
        "GET /peer/v1/identifiers",
        'POST /peer/v1/reservations\n{"id": "site-b.1a2b", "owner": "site-b", "network": "red", "vni": 300, '
        '"route_target": "65000:300"}',
        'PUT /peer/v1/extensions/site-b.1a2b\n{"id": "site-b.1a2b", "owner": "site-b", "network": "red", '
        '"vni": 300, "route_target": "65000:300", "generation": 1, "members": [{"site": "site-b", '
        '"vtep": "10.0.0.2", "network": "red"}, {"site": "fuzz", "vtep": "10.0.0.1", "network": "red"}], '
        '"session_key": "k"}',
        "DELETE /peer/v1/extensions/site-b.1a2b",
    ]
    for request in requests:
        write("peering", request.encode())


if __name__ == "__main__":
    for generate in (pipeline, bgp, config, api, peering):
        generate()
    for target in sorted(os.listdir(OUT)):
        print(target, len(os.listdir(os.path.join(OUT, target))), file=sys.stderr)
