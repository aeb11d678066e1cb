//! Cron expressions as the config writes them (`schedules[].cron`): parsed here, where the
//! config is checked, and used by the schedules to compute due times.

use croner::Cron;

/// Parses a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    Cron::new(expr)
        .parse()
        .map_err(|e| format!("invalid cron expression '{expr}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_expressions_are_refused() {
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("*/15 9-17 * * MON-FRI").is_ok());
    }
}
