//! Throughput of the content scanner (`Masker::scan`) on three kinds of
//! result data, in bytes of values scanned per second on one core:
//!
//! - `clinical_rows`: the values of rows of a clinical table (names, codes,
//!   numbers, free-text notes), about one value in ten holding PHI;
//! - `clean_text`: free-text notes without digits, `@`, or URLs (the
//!   prefilter's best case);
//! - `numeric_heavy`: numbers, measurements, ratios, amounts: every value
//!   holds a digit, so every value goes through the recognisers.
//!
//! Run: `cargo bench --bench mask -p vigil-proxy-core`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vigil_proxy_core::mask::{DetectorConfig, DetectorKind, MaskFormat, Masker};

/// A small deterministic generator (xorshift64*), so every run scans the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const FIRST: &[&str] = &[
    "Jane", "John", "Maria", "Wei", "Fatima", "Olivia", "Liam", "Noah", "Emma", "Sofía", "Amir",
    "Chloé", "Robert", "Linda", "Aiko", "Kwame",
];
const LAST: &[&str] = &[
    "Doe", "Smith", "Garcia", "Chen", "Okafor", "Müller", "Johnson", "Nguyen", "Patel", "Kowalski",
    "O'Brien", "Haddad", "Rossi", "Tanaka",
];
const SENTENCES: &[&str] = &[
    "Patient reports mild headache and intermittent nausea since last visit.",
    "Denies chest pain, shortness of breath or palpitations.",
    "Lungs clear to auscultation bilaterally; no wheezes or crackles.",
    "Continue current medication regimen and follow up in two weeks.",
    "Abdomen soft, non-tender, non-distended. Bowel sounds present.",
    "Patient counselled on diet and exercise; verbalised understanding.",
    "Family history notable for hypertension and type two diabetes.",
    "Skin warm and dry, no rashes or lesions noted on examination.",
    "Neurological exam grossly intact. Gait steady without assistance.",
    "Discussed risks and benefits of the proposed treatment plan.",
];
const NUMERIC_SENTENCES: &[&str] = &[
    "BP 128/82, HR 74, RR 16, temp 98.6 F, SpO2 97% on room air.",
    "Started metformin 500 mg BID; recheck A1C in 3 months (last 7.2%).",
    "Weight 82.5 kg, BMI 27.4. Pain 3/10.",
    "Ibuprofen 400 mg q6h prn, max 4 doses per day.",
    "WBC 6.8, Hgb 13.9, Plt 245. Na 139, K 4.1, Cr 0.9.",
];
const PHI_SNIPPETS: &[&str] = &[
    "SSN 123-45-6789 verified at intake.",
    "Call back at (555) 123-4567 after 5 pm.",
    "Seen on April 5, 2023 for follow-up.",
    "Patient email jane.doe85@example.com on file.",
    "Lives at 742 Evergreen Terrace, Springfield, IL 62704.",
    "DOB 04/05/1961, admitted 2023-04-05 08:15:00.",
    "Portal login from 192.168.14.23 noted.",
    "MRN-0012345 transferred from outside hospital.",
];
const CODES: &[&str] = &[
    "active",
    "inactive",
    "E11.9",
    "I10",
    "Z00.00",
    "outpatient",
    "inpatient",
    "ICD-10",
    "pending",
    "F",
    "M",
    "final",
    "preliminary",
    "Type 2 diabetes mellitus",
    "Essential hypertension",
];
const NUMBERS: &[&str] = &[
    "98.6",
    "12345",
    "120/80",
    "1,234.56",
    "0.5",
    "42",
    "3.14159",
    "100 mg",
    "7.2 mmol/L",
    "2023",
    "37.0",
    "250",
    "-12.5",
    "1e-3",
    "88",
    "5.5 x 10^9/L",
    "16",
    "0",
    "145/95",
    "99.99",
];

fn note(rng: &mut Rng, numeric: bool) -> String {
    let n = 1 + rng.below(4);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        if numeric && rng.below(3) == 0 {
            s.push_str(rng.pick(NUMERIC_SENTENCES));
        } else {
            s.push_str(rng.pick(SENTENCES));
        }
    }
    s
}

/// Values of a clinical table, column by column, row by row.
fn clinical_rows(rng: &mut Rng, rows: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..rows {
        // Ten values a row: one of them (on average) carries PHI.
        out.push(format!("{} {}", rng.pick(FIRST), rng.pick(LAST)));
        out.push(rng.pick(CODES).to_owned());
        out.push(rng.pick(NUMBERS).to_owned());
        out.push(rng.pick(CODES).to_owned());
        out.push(note(rng, true));
        out.push(note(rng, false));
        out.push(rng.pick(NUMBERS).to_owned());
        out.push(rng.pick(LAST).to_owned());
        let numeric = rng.below(2) == 0;
        out.push(note(rng, numeric));
        let mut last = note(rng, false);
        if rng.below(10) < 9 {
            let at = rng.below(2);
            let phi = rng.pick(PHI_SNIPPETS);
            last = if at == 0 {
                format!("{phi} {last}")
            } else {
                format!("{last} {phi}")
            };
        }
        out.push(last);
    }
    out.into_iter().map(String::into_bytes).collect()
}

fn clean_text(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| note(rng, false).into_bytes()).collect()
}

fn numeric_heavy(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 4 == 0 {
                rng.pick(NUMERIC_SENTENCES).to_owned().into_bytes()
            } else {
                rng.pick(NUMBERS).to_owned().into_bytes()
            }
        })
        .collect()
}

fn masker(format: MaskFormat) -> Masker {
    let mut cfg = DetectorConfig {
        format,
        ..DetectorConfig::default()
    };
    cfg.patterns
        .insert(DetectorKind::Mrn, vec!["MRN-#######".to_owned()]);
    cfg.patterns
        .insert(DetectorKind::Account, vec!["###-###-###".to_owned()]);
    Masker::new([7; 32], &cfg).expect("config")
}

fn bench_set(c: &mut Criterion, name: &str, values: &[Vec<u8>], m: &Masker) {
    let bytes: usize = values.iter().map(Vec::len).sum();
    let found = values.iter().filter(|v| m.scan(v).is_some()).count();
    eprintln!(
        "{name}: {} values, {bytes} bytes, {found} with a hit ({:.1} %)",
        values.len(),
        100.0 * found as f64 / values.len() as f64
    );
    let mut g = c.benchmark_group("mask_scan");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut n = 0usize;
            for v in values {
                if let Some(s) = m.scan(black_box(v)) {
                    n += s.masked.len();
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let redact = masker(MaskFormat::Redact);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let clinical = clinical_rows(&mut rng, 2_000);
    let clean = clean_text(&mut rng, 5_000);
    let numeric = numeric_heavy(&mut rng, 20_000);
    bench_set(c, "clinical_rows", &clinical, &redact);
    bench_set(c, "clean_text", &clean, &redact);
    bench_set(c, "numeric_heavy", &numeric, &redact);
    bench_set(
        c,
        "clinical_rows_hash",
        &clinical,
        &masker(MaskFormat::Hash),
    );

    let mut g = c.benchmark_group("mask_value");
    let values: Vec<&[u8]> = vec![b"123-45-6789", b"jane.doe85@example.com", b"Jane Doe"];
    let bytes: usize = values.iter().map(|v| v.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    for (name, f) in [("hash", MaskFormat::Hash), ("partial", MaskFormat::Partial)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for v in &values {
                    black_box(redact.mask_value(f, black_box(v)));
                }
            })
        });
    }
    g.bench_function("hash_i64", |b| {
        let mut i = 0i64;
        b.iter(|| {
            i += 1;
            black_box(redact.hash_i64(black_box(i)))
        })
    });
    g.finish();

    // A model's output streamed in token-sized pieces (4 bytes) through
    // the stream masker, against the same text scanned whole: the cost of
    // the hold-back per MB of output.
    let text: String = clinical
        .iter()
        .chain(clean.iter())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let text = &text[..text.len().min(1 << 20)];
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("whole_scan", |b| {
        b.iter(|| black_box(redact.scan(black_box(text.as_bytes()))))
    });
    g.bench_function("pieces_of_4_bytes", |b| {
        b.iter(|| {
            let mut s = vigil_proxy_core::mask::StreamMasker::new(&redact);
            let mut out = 0;
            let mut rest = text;
            while !rest.is_empty() {
                let mut n = 4.min(rest.len());
                while !rest.is_char_boundary(n) {
                    n += 1;
                }
                out += s.push(&rest[..n]).len();
                rest = &rest[n..];
            }
            out += s.finish().len();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(mask, benches);
criterion_main!(mask);
