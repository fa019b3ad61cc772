import ArgumentParser
import Peering

/// `vxswitch pki`: the CA and site certificates of the site-to-site channel (`[peering]`).
struct PKICommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pki",
    abstract: "Certificates for the site-to-site channel: a CA, and one certificate per site.",
    subcommands: [PKICACommand.self, PKIIssueCommand.self])
}

struct PKICACommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ca", abstract: "Create a CA (P-256): DIR/ca.pem and DIR/ca.key (mode 0600).")

  @Option(help: "Directory to write into (created when missing; existing files are not replaced).")
  var out: String
  @Option(help: "Years the CA certificate is valid.") var years = 10

  func run() throws {
    guard (1...100).contains(years) else { throw ValidationError("--years must be 1 to 100") }
    do {
      let ca = try SiteCA.create(validity: Double(years) * 365 * 86400)
      try ca.write(to: out)
      print("CA written to \(out)/\(SiteCA.certificateFile) and \(out)/\(SiteCA.keyFile)")
    } catch {
      printError("vxswitch pki ca: \(error)")
      throw ExitCode(1)
    }
  }
}

struct PKIIssueCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "issue",
    abstract: "Issue a site certificate (SAN DNS = the site name): DIR/NAME.pem, DIR/NAME.key, DIR/ca.pem.")

  @Option(help: "Directory of the CA (ca.pem, ca.key).") var ca: String
  @Option(help: "The site's name, as [site] name and the other sites' [[site_peer]] name write it.")
  var site: String
  @Option(help: "Directory to write into (created when missing; existing files are not replaced).")
  var out: String
  @Option(help: "Years the certificate is valid (at most as long as the CA).") var years = 2

  func run() throws {
    guard (1...100).contains(years) else { throw ValidationError("--years must be 1 to 100") }
    do {
      let authority = try SiteCA(directory: ca)
      let files = try authority.issue(site: site, validity: Double(years) * 365 * 86400).write(
        to: out, ca: authority)
      print(
        """
        [peering]
        listen = "0.0.0.0:7443"
        tls_cert = "\(files.certificate)"
        tls_key = "\(files.key)"
        tls_ca = "\(files.ca)"
        """)
    } catch {
      printError("vxswitch pki issue: \(error)")
      throw ExitCode(1)
    }
  }
}
