//! OCPI 2.2.1's words for a connector (mod_locations: ConnectorType, ConnectorFormat,
//! PowerType). Events keep them as the text the CPO sent; input is checked against
//! these, and the API description lists them.

use serde::{Deserialize, Serialize};

/// A value of one of OCPI's connector enumerations, as text.
fn is<'de, T: Deserialize<'de>>(value: &'de str) -> bool {
    T::deserialize(serde::de::value::BorrowedStrDeserializer::<
        serde::de::value::Error,
    >::new(value))
    .is_ok()
}

/// The socket or plug standard (OCPI `ConnectorType`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ConnectorStandard {
    CHADEMO,
    CHAOJI,
    DOMESTIC_A,
    DOMESTIC_B,
    DOMESTIC_C,
    DOMESTIC_D,
    DOMESTIC_E,
    DOMESTIC_F,
    DOMESTIC_G,
    DOMESTIC_H,
    DOMESTIC_I,
    DOMESTIC_J,
    DOMESTIC_K,
    DOMESTIC_L,
    DOMESTIC_M,
    DOMESTIC_N,
    DOMESTIC_O,
    GBT_AC,
    GBT_DC,
    IEC_60309_2_single_16,
    IEC_60309_2_three_16,
    IEC_60309_2_three_32,
    IEC_60309_2_three_64,
    IEC_62196_T1,
    IEC_62196_T1_COMBO,
    IEC_62196_T2,
    IEC_62196_T2_COMBO,
    IEC_62196_T3A,
    IEC_62196_T3C,
    NEMA_5_20,
    NEMA_6_30,
    NEMA_6_50,
    NEMA_10_30,
    NEMA_10_50,
    NEMA_14_30,
    NEMA_14_50,
    PANTOGRAPH_BOTTOM_UP,
    PANTOGRAPH_TOP_DOWN,
    TESLA_R,
    TESLA_S,
}

/// A socket, or a cable attached to the charge point (OCPI `ConnectorFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConnectorFormat {
    Socket,
    Cable,
}

/// AC phases or DC (OCPI `PowerType`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PowerType {
    AC_1_PHASE,
    AC_2_PHASE,
    AC_2_PHASE_SPLIT,
    AC_3_PHASE,
    DC,
}

/// Which of a connector's words is not OCPI's: (field, what it must be).
pub fn connector_problems(
    standard: &str,
    format: &str,
    power_type: &str,
) -> Vec<(&'static str, &'static str)> {
    let mut problems = Vec::new();
    if !is::<ConnectorStandard>(standard) {
        problems.push((
            "standard",
            "Must be an OCPI 2.2.1 ConnectorType, e.g. IEC_62196_T2_COMBO.",
        ));
    }
    if !is::<ConnectorFormat>(format) {
        problems.push(("format", "Must be SOCKET or CABLE."));
    }
    if !is::<PowerType>(power_type) {
        problems.push((
            "power_type",
            "Must be AC_1_PHASE, AC_2_PHASE, AC_2_PHASE_SPLIT, AC_3_PHASE or DC.",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocpi_words_are_known_and_others_named() {
        assert!(connector_problems("IEC_62196_T2_COMBO", "CABLE", "DC").is_empty());
        assert!(connector_problems("IEC_60309_2_single_16", "SOCKET", "AC_1_PHASE").is_empty());
        let fields: Vec<_> = connector_problems("TYPE2", "cable", "AC")
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["standard", "format", "power_type"]);
    }
}
