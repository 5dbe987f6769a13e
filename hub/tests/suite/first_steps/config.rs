//! `nerve config check`: a file the hub could not start with fails the check with a reason;
//! a good one prints every section readably, without secrets.

use crate::harness::{TempFile, config_check};

fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_missing_tls_file_fails_the_check_with_its_path() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let key = TempFile::write("pem", &cert.key_pair.serialize_pem());
    let missing = std::env::temp_dir().join("nerve-no-such-cert.pem");
    let out = config_check(&format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        missing.display(),
        key.path().display()
    ));
    let text = printed(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tls.cert_file") && text.contains("nerve-no-such-cert.pem"),
        "{text}"
    );
    // A key that does not belong to the certificate is found too.
    let cert_file = TempFile::write("pem", &cert.cert.pem());
    let other = rcgen::generate_simple_self_signed(vec!["other".into()]).expect("cert");
    let other_key = TempFile::write("pem", &other.key_pair.serialize_pem());
    let out = config_check(&format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.path().display(),
        other_key.path().display()
    ));
    assert!(!out.status.success(), "{}", printed(&out));
    // The matching pair passes.
    let out = config_check(&format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_file.path().display(),
        key.path().display()
    ));
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("https and wss"), "{text}");
}

#[test]
fn a_good_file_prints_every_section_readably_without_its_keys() {
    let out = config_check(
        "access_keys = [\"do-not-print-me\"]\n[security]\nallowed_origins = [\"https://app.example\"]\n[demo]\nenabled = false\n",
    );
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    for header in [
        "[limits]",
        "[cluster]",
        "[bus]",
        "[demo]",
        "[tls]",
        "[security]",
        "[upstream]",
        "[telemetry]",
    ] {
        assert!(text.contains(header), "{header}: {text}");
    }
    assert!(
        text.contains("enabled = false") && text.contains("demo pages are off"),
        "{text}"
    );
    assert!(
        text.contains("allowed_origins = [\"https://app.example\"]"),
        "{text}"
    );
    assert!(!text.contains("do-not-print-me"), "{text}");
    assert!(!text.contains(" { "), "debug structs: {text}");
}
