//! Worlds: one environment with its physical constants changed, as Gymnasium's attributes allow
//! (`env.unwrapped.length = 1.0`, `gym.make("Pendulum-v1", g=6.0)`). A sequence of worlds is
//! data a user writes: `default; length=1.0,masspole=0.3; gravity=14,force_mag=14`, worlds
//! separated by `;`, each a comma-separated list of constants changed from Gymnasium's
//! defaults (`default` changes none).

use super::{CartPole, CartPoleParams, Env, EnvError, Pendulum, PendulumParams};
use serde::{Deserialize, Serialize};

/// The physical constants of one world of one environment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "env", rename_all = "kebab-case")]
pub enum Physics {
    CartPole(CartPoleParams),
    Pendulum(PendulumParams),
}

impl Physics {
    /// Gymnasium's constants of environment `id` (`cartpole-v1`, `pendulum-v1`).
    pub fn default_for(id: &str) -> Result<Self, EnvError> {
        match id.to_ascii_lowercase().as_str() {
            "cartpole-v1" | "cartpole" => Ok(Physics::CartPole(CartPoleParams::default())),
            "pendulum-v1" | "pendulum" => Ok(Physics::Pendulum(PendulumParams::default())),
            _ => Err(EnvError::UnknownEnv(id.to_string())),
        }
    }

    /// The environment of this world, with its `TimeLimit`.
    pub fn make(&self) -> Box<dyn Env> {
        match *self {
            Physics::CartPole(p) => Box::new(CartPole::with_params(p)),
            Physics::Pendulum(p) => Box::new(Pendulum::with_params(p)),
        }
    }

    /// The constants by name.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        match self {
            Physics::CartPole(p) => p.named().to_vec(),
            Physics::Pendulum(p) => p.named().to_vec(),
        }
    }

    /// Overrides constant `name`; false when this environment has no such constant.
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        match self {
            Physics::CartPole(p) => p.set(name, value),
            Physics::Pendulum(p) => p.set(name, value),
        }
    }

    /// The constants that differ from the environment's defaults, as `name=value` joined by
    /// commas (`default` when none does): the world's spec.
    pub fn spec(&self) -> String {
        let base = match self {
            Physics::CartPole(_) => Physics::CartPole(CartPoleParams::default()),
            Physics::Pendulum(_) => Physics::Pendulum(PendulumParams::default()),
        };
        let changed: Vec<String> = self
            .named()
            .into_iter()
            .zip(base.named())
            .filter(|((_, v), (_, d))| v != d)
            .map(|((name, v), _)| format!("{name}={v}"))
            .collect();
        if changed.is_empty() {
            "default".to_string()
        } else {
            changed.join(",")
        }
    }
}

/// The default sequence of three worlds of environment `id`: Gymnasium's own physics first, then
/// two changed ones that the planner with the true physics still masters (CartPole: a pole
/// twice as long and three times as heavy, then a cart twice as heavy; Pendulum: gravity 6 and
/// a lighter pendulum, then a shorter one).
pub fn default_worlds(id: &str) -> Result<Vec<Physics>, EnvError> {
    let spec = match Physics::default_for(id)? {
        Physics::CartPole(_) => DEFAULT_CARTPOLE_WORLDS,
        Physics::Pendulum(_) => DEFAULT_PENDULUM_WORLDS,
    };
    parse_worlds(id, spec)
}

/// [`default_worlds`] of CartPole, as a spec.
pub const DEFAULT_CARTPOLE_WORLDS: &str = "default; length=1,masspole=0.3; masscart=2";
/// [`default_worlds`] of Pendulum, as a spec.
pub const DEFAULT_PENDULUM_WORLDS: &str = "default; g=6,m=0.6; l=0.7";

/// Parses a world sequence for environment `id` (see the module's syntax). Every constant must
/// be a known one of that environment and a positive finite number.
pub fn parse_worlds(id: &str, spec: &str) -> Result<Vec<Physics>, EnvError> {
    let base = Physics::default_for(id)?;
    let bad = |world: &str, reason: String| EnvError::BadWorld {
        world: world.trim().to_string(),
        reason,
    };
    let worlds: Vec<&str> = spec.split(';').collect();
    worlds
        .iter()
        .map(|world| {
            let mut physics = base;
            let text = world.trim();
            if text.is_empty() {
                return Err(bad(world, "an empty world (write `default`)".into()));
            }
            if text == "default" {
                return Ok(physics);
            }
            for pair in text.split(',') {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(world, format!("{pair:?} is not name=value")))?;
                let value: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(world, format!("{:?} is not a number", value.trim())))?;
                if !(value.is_finite() && value > 0.0) {
                    return Err(bad(world, format!("{} must be positive", name.trim())));
                }
                if !physics.set(name.trim(), value) {
                    let known: Vec<&str> = base.named().iter().map(|(n, _)| *n).collect();
                    return Err(bad(
                        world,
                        format!(
                            "unknown constant {:?} (known: {})",
                            name.trim(),
                            known.join(", ")
                        ),
                    ));
                }
            }
            Ok(physics)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sequence_and_names_the_bad_world() {
        let w = parse_worlds("cartpole-v1", "default; length=1,masspole=0.3").unwrap();
        assert_eq!(w[0], Physics::CartPole(CartPoleParams::default()));
        assert_eq!(w[1].spec(), "masspole=0.3,length=1");
        let e = parse_worlds("pendulum-v1", "g=6; gravity=3").unwrap_err();
        assert!(e.to_string().contains("gravity=3") && e.to_string().contains("unknown"));
        assert!(parse_worlds("pendulum-v1", "g=-1").is_err());
        assert!(parse_worlds("pendulum-v1", "g=6;").is_err());
        assert_eq!(default_worlds("pendulum-v1").unwrap().len(), 3);
    }
}
