//! Sales: organisations, pipelines of ordered stages, opportunities in them and their history.
//! Plain data and rules: resource names, the forecast categories and stage outcomes (enums,
//! mapped to text only by the store), organisation domains, the stage-list rules, ISO 4217
//! currencies (`currency`), amounts in integer minor units and what a history event tracks.

pub mod currency;

use crate::name::parse_id;
use crate::ValidationError;

pub fn organization_name(id: i64) -> String {
    format!("organizations/{id}")
}

pub fn pipeline_name(id: i64) -> String {
    format!("pipelines/{id}")
}

pub fn stage_name(pipeline: i64, stage: i64) -> String {
    format!("pipelines/{pipeline}/stages/{stage}")
}

pub fn opportunity_name(id: i64) -> String {
    format!("opportunities/{id}")
}

/// Parse `pipelines/{p}/stages/{s}`.
pub fn parse_stage(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("pipelines/")?;
    let (p, s) = rest.split_once("/stages/")?;
    Some((
        parse_id(&format!("p/{p}"), "p")?,
        parse_id(&format!("s/{s}"), "s")?,
    ))
}

/// Where an opportunity stands in the forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForecastCategory {
    Pipeline,
    BestCase,
    Commit,
    Closed,
    Omitted,
}

impl ForecastCategory {
    pub const ALL: [ForecastCategory; 5] = [
        ForecastCategory::Pipeline,
        ForecastCategory::BestCase,
        ForecastCategory::Commit,
        ForecastCategory::Closed,
        ForecastCategory::Omitted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ForecastCategory::Pipeline => "PIPELINE",
            ForecastCategory::BestCase => "BEST_CASE",
            ForecastCategory::Commit => "COMMIT",
            ForecastCategory::Closed => "CLOSED",
            ForecastCategory::Omitted => "OMITTED",
        }
    }

    pub fn parse(s: &str) -> Option<ForecastCategory> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Whether a stage is still open, or closes its opportunities as won or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageOutcome {
    Open,
    Won,
    Lost,
}

impl StageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::Open => "OPEN",
            StageOutcome::Won => "WON",
            StageOutcome::Lost => "LOST",
        }
    }

    pub fn parse(s: &str) -> Option<StageOutcome> {
        [StageOutcome::Open, StageOutcome::Won, StageOutcome::Lost]
            .into_iter()
            .find(|o| o.as_str() == s)
    }

    pub fn is_closed(self) -> bool {
        self != StageOutcome::Open
    }
}

pub fn competitor_name(id: i64) -> String {
    format!("competitors/{id}")
}

pub fn lost_reason_name(id: i64) -> String {
    format!("lostReasons/{id}")
}

/// What a competitor is to one opportunity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompetitorRole {
    /// The supplier the customer has now.
    Incumbent,
    /// Also bidding.
    Active,
    /// Took the deal.
    LostTo,
    /// Beaten.
    WonAgainst,
}

impl CompetitorRole {
    pub const ALL: [CompetitorRole; 4] = [
        CompetitorRole::Incumbent,
        CompetitorRole::Active,
        CompetitorRole::LostTo,
        CompetitorRole::WonAgainst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompetitorRole::Incumbent => "INCUMBENT",
            CompetitorRole::Active => "ACTIVE",
            CompetitorRole::LostTo => "LOST_TO",
            CompetitorRole::WonAgainst => "WON_AGAINST",
        }
    }

    pub fn parse(s: &str) -> Option<CompetitorRole> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A competitor's price against ours on one opportunity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PricePosition {
    Unknown,
    Lower,
    Similar,
    Higher,
}

impl PricePosition {
    pub const ALL: [PricePosition; 4] = [
        PricePosition::Unknown,
        PricePosition::Lower,
        PricePosition::Similar,
        PricePosition::Higher,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PricePosition::Unknown => "UNKNOWN",
            PricePosition::Lower => "LOWER",
            PricePosition::Similar => "SIMILAR",
            PricePosition::Higher => "HIGHER",
        }
    }

    pub fn parse(s: &str) -> Option<PricePosition> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A stage as written: its place is its index in the pipeline's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// The stage's id when it already exists (an update keeps it), `None` for a new one.
    pub id: Option<i64>,
    pub display_name: String,
    /// 0..=100, percent.
    pub probability: i64,
    pub forecast_category: ForecastCategory,
    pub outcome: StageOutcome,
}

/// The most stages one pipeline holds.
pub const MAX_STAGES: usize = 50;

/// The rules a pipeline's stage list keeps: 1..=[`MAX_STAGES`] stages with distinct names,
/// probabilities in 0..=100, at least one open stage, won stages at 100 % and CLOSED, lost
/// stages at 0 % and OMITTED or CLOSED, open stages never CLOSED. Violations on
/// `{field}[i].…`.
pub fn check_stages(stages: &[StageSpec], field: &str, errs: &mut ValidationError) {
    if stages.is_empty() {
        errs.add(field, "is required: at least one stage");
        return;
    }
    if stages.len() > MAX_STAGES {
        errs.add(field, format!("must hold at most {MAX_STAGES} stages"));
        return;
    }
    if !stages.iter().any(|s| s.outcome == StageOutcome::Open) {
        errs.add(
            field,
            "must hold at least one open stage (neither won nor lost)",
        );
    }
    for (i, s) in stages.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if stages[..i]
            .iter()
            .any(|o| o.display_name.to_lowercase() == s.display_name.to_lowercase())
        {
            errs.add(
                format!("{f}.display_name"),
                "is used by an earlier stage of this pipeline",
            );
        }
        if !(0..=100).contains(&s.probability) {
            errs.add(format!("{f}.probability"), "must be 0 to 100");
        }
        match s.outcome {
            StageOutcome::Won if s.forecast_category != ForecastCategory::Closed => errs.add(
                format!("{f}.forecast_category"),
                "must be CLOSED for a won stage",
            ),
            StageOutcome::Lost
                if !matches!(
                    s.forecast_category,
                    ForecastCategory::Omitted | ForecastCategory::Closed
                ) =>
            {
                errs.add(
                    format!("{f}.forecast_category"),
                    "must be OMITTED or CLOSED for a lost stage",
                )
            }
            StageOutcome::Open if s.forecast_category == ForecastCategory::Closed => errs.add(
                format!("{f}.forecast_category"),
                "cannot be CLOSED for an open stage",
            ),
            _ => {}
        }
        if s.outcome == StageOutcome::Won && s.probability != 100 {
            errs.add(format!("{f}.probability"), "must be 100 for a won stage");
        }
        if s.outcome == StageOutcome::Lost && s.probability != 0 {
            errs.add(format!("{f}.probability"), "must be 0 for a lost stage");
        }
    }
}

/// An organisation's web domain, normalised: lower-case, without scheme, path, port, `www.`
/// or trailing dot, in its IDNA ASCII form; two spellings of one company's domain compare
/// equal, which is what makes it unique.
pub fn domain(raw: &str) -> Result<String, &'static str> {
    const BAD: &str = "must be a domain name such as example.com";
    let mut d = raw.trim();
    for scheme in ["https://", "http://", "HTTPS://", "HTTP://"] {
        if let Some(rest) = d.strip_prefix(scheme) {
            d = rest;
        }
    }
    let d = d.split(['/', '?', '#']).next().unwrap_or("");
    let d = d.rsplit_once('@').map_or(d, |(_, host)| host);
    let d = match d.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => d,
    };
    let d = d.trim_end_matches('.');
    let ascii = idna::domain_to_ascii_strict(d).map_err(|_| BAD)?;
    let ascii = ascii.strip_prefix("www.").unwrap_or(&ascii).to_string();
    if ascii.len() > 253
        || !ascii.contains('.')
        || ascii
            .split('.')
            .any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Err(BAD);
    }
    Ok(ascii)
}

/// A `YYYY-MM-DD` close date (empty: none).
pub fn close_date(raw: &str) -> Result<String, &'static str> {
    let d = raw.trim();
    if d.is_empty() {
        return Ok(String::new());
    }
    match crate::time::parse_date(d) {
        Some(_) => Ok(d.to_string()),
        None => Err("must be a date YYYY-MM-DD"),
    }
}

/// The largest amount accepted, in minor units (10^15: a typo guard, far below `i64::MAX`).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// An amount in minor units: 0..=[`MAX_AMOUNT`].
pub fn amount(minor: i64) -> Result<i64, &'static str> {
    if minor < 0 {
        Err("must not be negative")
    } else if minor > MAX_AMOUNT {
        Err("is too large (at most 10^15 minor units)")
    } else {
        Ok(minor)
    }
}

/// `amount × probability %`, rounded down: the weighted amount of a pipeline.
pub fn weighted(amount: i64, probability: i64) -> i64 {
    ((amount as i128 * probability as i128) / 100) as i64
}

/// What an opportunity history event records as changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tracked {
    Created,
    Stage,
    Amount,
    Probability,
    CloseDate,
    ForecastCategory,
    Owner,
}

impl Tracked {
    pub const ALL: [Tracked; 7] = [
        Tracked::Created,
        Tracked::Stage,
        Tracked::Amount,
        Tracked::Probability,
        Tracked::CloseDate,
        Tracked::ForecastCategory,
        Tracked::Owner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tracked::Created => "created",
            Tracked::Stage => "stage",
            Tracked::Amount => "amount",
            Tracked::Probability => "probability",
            Tracked::CloseDate => "close_date",
            Tracked::ForecastCategory => "forecast_category",
            Tracked::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Tracked> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_normalise_to_one_spelling() {
        for raw in [
            "example.com",
            "https://www.Example.COM/about",
            "http://example.com:8080",
            "EXAMPLE.com.",
        ] {
            assert_eq!(domain(raw).as_deref(), Ok("example.com"), "{raw}");
        }
        assert_eq!(domain("bücher.de").as_deref(), Ok("xn--bcher-kva.de"));
        assert!(domain("localhost").is_err());
        assert!(domain("").is_err());
        assert!(domain("a..b").is_err());
    }

    #[test]
    fn stage_names_parse() {
        assert_eq!(parse_stage("pipelines/2/stages/7"), Some((2, 7)));
        assert_eq!(parse_stage("pipelines/2/stages/x"), None);
        assert_eq!(parse_stage("pipelines/0/stages/1"), None);
        assert_eq!(stage_name(2, 7), "pipelines/2/stages/7");
    }

    fn spec(name: &str, p: i64, c: ForecastCategory, o: StageOutcome) -> StageSpec {
        StageSpec {
            id: None,
            display_name: name.into(),
            probability: p,
            forecast_category: c,
            outcome: o,
        }
    }

    #[test]
    fn stage_lists_keep_their_rules() {
        use ForecastCategory::*;
        use StageOutcome::*;
        let mut errs = ValidationError::new();
        check_stages(
            &[
                spec("Qualify", 10, Pipeline, Open),
                spec("Won", 100, Closed, Won),
                spec("Lost", 0, Omitted, Lost),
            ],
            "stages",
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs}");
        let mut errs = ValidationError::new();
        check_stages(
            &[spec("Won", 90, Commit, Won), spec("won", 0, Pipeline, Lost)],
            "stages",
            &mut errs,
        );
        let fields: Vec<_> = errs.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "stages",
                "stages[0].forecast_category",
                "stages[0].probability",
                "stages[1].display_name",
                "stages[1].forecast_category"
            ]
        );
    }

    #[test]
    fn amounts_and_weights() {
        assert!(amount(-1).is_err());
        assert_eq!(amount(0), Ok(0));
        assert_eq!(weighted(10_001, 50), 5_000);
        assert_eq!(weighted(MAX_AMOUNT, 100), MAX_AMOUNT);
    }
}
