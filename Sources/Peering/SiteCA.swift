import Crypto
import Dataplane
import Foundation
import X509

#if canImport(Glibc)
  import Glibc
#endif

/// A small PKI for the site-to-site channel (the lab, tests, small deployments): one CA
/// (P-256 key, self-signed certificate) that issues each site a certificate whose subject
/// alternative name is the site's name as a DNS name, for TLS server and client use.
///
/// Files: a CA directory holds `ca.pem` and `ca.key`; an issued site gets `NAME.pem`,
/// `NAME.key` and a copy of `ca.pem`, what `[peering] tls_cert`, `tls_key` and `tls_ca` name.
/// Keys are PKCS#8 PEM files of mode 0600.
public struct SiteCA: Sendable {
  public static let certificateFile = "ca.pem"
  public static let keyFile = "ca.key"

  public let certificate: Certificate
  let privateKey: Certificate.PrivateKey

  /// A new CA; its certificate is valid from an hour before `now` for `validity`.
  public static func create(
    name: String = "vxswitch sites CA", validity: TimeInterval = 10 * 365 * 86400, now: Date = Date()
  ) throws -> SiteCA {
    let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
    let subject = try DistinguishedName {
      OrganizationName("vxswitch")
      CommonName(name)
    }
    let certificate = try Certificate(
      version: .v3, serialNumber: .init(), publicKey: key.publicKey,
      notValidBefore: now - 3600, notValidAfter: now + validity,
      issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
        Critical(KeyUsage(keyCertSign: true, cRLSign: true))
        SubjectKeyIdentifier(hash: key.publicKey)
      },
      issuerPrivateKey: key)
    return SiteCA(certificate: certificate, privateKey: key)
  }

  /// The CA in `directory` (`ca.pem`, `ca.key`).
  public init(directory: String) throws {
    let url = URL(fileURLWithPath: directory)
    do {
      certificate = try Certificate(
        pemEncoded: try String(contentsOf: url.appendingPathComponent(Self.certificateFile), encoding: .utf8))
      privateKey = try Certificate.PrivateKey(
        pemEncoded: try String(contentsOf: url.appendingPathComponent(Self.keyFile), encoding: .utf8))
    } catch {
      throw SiteCAError(
        "cannot read the CA in \(directory) (\(Self.certificateFile), \(Self.keyFile)): \(error)")
    }
    guard privateKey.publicKey == certificate.publicKey else {
      throw SiteCAError("\(directory): \(Self.keyFile) is not the key of \(Self.certificateFile)")
    }
  }

  init(certificate: Certificate, privateKey: Certificate.PrivateKey) {
    self.certificate = certificate
    self.privateKey = privateKey
  }

  public var certificatePEM: String {
    get throws { try certificate.serializeAsPEM().pemString }
  }

  /// Writes `ca.pem` and `ca.key` (mode 0600) into `directory`, created when missing.
  /// Existing files are not replaced.
  public func write(to directory: String) throws {
    try SiteFiles.write(
      [
        (Self.certificateFile, try certificatePEM, 0o644),
        (Self.keyFile, try privateKey.serializeAsPEM().pemString, 0o600),
      ], to: directory)
  }

  /// A certificate for `site` (a valid site name that is also a DNS name): subject CN = the name, subject alternative
  /// name DNS = the name, extended key usage serverAuth and clientAuth; valid from an hour
  /// before `now` for `validity`.
  public func issue(site: String, validity: TimeInterval = 2 * 365 * 86400, now: Date = Date()) throws
    -> SiteCertificate
  {
    guard SiteConfig.isValidSiteName(site) else {
      throw SiteCAError("site name must be \(SiteConfig.siteNameRule) (got \(site))")
    }
    guard SiteConfig.isValidPeerSiteName(site) else {
      throw SiteCAError("site name must be \(SiteConfig.peerSiteNameRule) (got \(site))")
    }
    let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
    let subject = try DistinguishedName {
      OrganizationName("vxswitch")
      CommonName(site)
    }
    let authorityKey = try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
    let certificate = try Certificate(
      version: .v3, serialNumber: .init(), publicKey: key.publicKey,
      notValidBefore: now - 3600, notValidAfter: min(now + validity, self.certificate.notValidAfter),
      issuer: self.certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
      extensions: try Certificate.Extensions {
        Critical(BasicConstraints.notCertificateAuthority)
        Critical(KeyUsage(digitalSignature: true))
        try ExtendedKeyUsage([.serverAuth, .clientAuth])
        SubjectAlternativeNames([.dnsName(site)])
        SubjectKeyIdentifier(hash: key.publicKey)
        AuthorityKeyIdentifier(keyIdentifier: authorityKey)
      },
      issuerPrivateKey: privateKey)
    return SiteCertificate(
      site: site, certificate: certificate, privateKeyPEM: try key.serializeAsPEM().pemString)
  }
}

/// A site's certificate and key, as `SiteCA.issue` made them.
public struct SiteCertificate: Sendable {
  public let site: String
  public let certificate: Certificate
  public let privateKeyPEM: String

  public var certificatePEM: String {
    get throws { try certificate.serializeAsPEM().pemString }
  }

  /// The files `[peering]` names, once written by `write(to:ca:)`.
  public struct Files: Sendable, Equatable {
    public var certificate: String
    public var key: String
    public var ca: String
  }

  /// Writes `SITE.pem`, `SITE.key` (mode 0600) and `ca.pem` into `directory`, created when
  /// missing. Existing files are not replaced (`ca.pem` may be, if it is the same CA's).
  @discardableResult
  public func write(to directory: String, ca: SiteCA) throws -> Files {
    let url = URL(fileURLWithPath: directory)
    let caPath = url.appendingPathComponent(SiteCA.certificateFile).path
    let caPEM = try ca.certificatePEM
    var files: [(String, String, Int)] = [
      ("\(site).pem", try certificatePEM, 0o644), ("\(site).key", privateKeyPEM, 0o600),
    ]
    if let existing = try? String(contentsOfFile: caPath, encoding: .utf8) {
      guard existing == caPEM else {
        throw SiteCAError("\(caPath) exists and holds another CA's certificate")
      }
    } else {
      files.append((SiteCA.certificateFile, caPEM, 0o644))
    }
    try SiteFiles.write(files, to: directory)
    return Files(
      certificate: url.appendingPathComponent("\(site).pem").path,
      key: url.appendingPathComponent("\(site).key").path, ca: caPath)
  }
}

public struct SiteCAError: Error, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

enum SiteFiles {
  /// Creates each file (name, contents, mode) in `directory`; none is written when one exists.
  static func write(_ files: [(name: String, contents: String, mode: Int)], to directory: String) throws {
    let manager = FileManager.default
    do {
      try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw SiteCAError("cannot create \(directory): \(error)")
    }
    let url = URL(fileURLWithPath: directory)
    for file in files where manager.fileExists(atPath: url.appendingPathComponent(file.name).path) {
      throw SiteCAError("\(url.appendingPathComponent(file.name).path) exists; not replaced")
    }
    for file in files {
      let path = url.appendingPathComponent(file.name).path
      // Created with its final mode (O_EXCL: never through an existing file or link).
      let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(file.mode))
      guard fd >= 0 else { throw SiteCAError("cannot create \(path): \(String(cString: strerror(errno)))") }
      defer { close(fd) }
      let bytes = Array(file.contents.utf8)
      let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      guard written == bytes.count else { throw SiteCAError("cannot write \(path)") }
      fchmod(fd, mode_t(file.mode))
    }
  }
}
