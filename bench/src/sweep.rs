//! `ringlab sweep`'s grid: `--param knob=v1,v2,...` (one or two) expanded into every
//! combination of values, each applied to the experiment and checked before anything runs.
//! A knob is what [`Experiment::set`] takes: a `[totem]` knob, `nodes`, `load.rate`, ...,
//! `store.bytes` (the `[store]` section's size), or a service's key, written
//! `service_config.store.design` (or `store.design`, `resources.policy`); a value that
//! parses as an integer or a boolean is one, any other is a string
//! (`--param service_config.store.path=unicast,ring`).

use crate::experiment::Experiment;
use anyhow::{bail, Context, Result};

/// One knob and the values it takes.
pub type Axis = (String, Vec<String>);

/// One point of the grid: a value for each knob.
pub type Point = Vec<(String, String)>;

/// One configuration of a sweep.
#[derive(Clone, Debug)]
pub struct Configuration {
    /// `knob=value` of each knob, comma-separated: the run's label and directory.
    pub label: String,
    /// The experiment with those knobs set.
    pub experiment: Experiment,
}

/// Parses `knob=v1,v2,...` arguments, at most two, into axes.
pub fn axes(params: &[String]) -> Result<Vec<Axis>> {
    if params.len() > 2 {
        bail!("at most two --param");
    }
    params
        .iter()
        .map(|p| {
            let (k, vs) = p
                .split_once('=')
                .with_context(|| format!("--param {p}: expected knob=v1,v2,..."))?;
            Ok((k.into(), vs.split(',').map(String::from).collect()))
        })
        .collect()
}

/// Returns every combination of the axes' values, the first axis varying slowest.
pub fn grid(axes: &[Axis]) -> Vec<Point> {
    let mut grid: Vec<Point> = vec![vec![]];
    for (k, vs) in axes {
        grid = grid
            .into_iter()
            .flat_map(|g| {
                vs.iter().map(move |v| {
                    let mut g = g.clone();
                    g.push((k.clone(), v.clone()));
                    g
                })
            })
            .collect();
    }
    grid
}

/// Returns a point's label: `knob=value` of each knob, comma-separated.
pub fn label(point: &[(String, String)]) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Returns every configuration of a sweep of `base` over `params`, each checked.
pub fn configurations(base: &Experiment, params: &[String]) -> Result<Vec<Configuration>> {
    grid(&axes(params)?)
        .iter()
        .map(|point| {
            let mut e = base.clone();
            for (k, v) in point {
                e.set(k, v).with_context(|| format!("{k}={v}"))?;
            }
            Ok(Configuration {
                label: label(point),
                experiment: e,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    fn base() -> Experiment {
        toml::from_str(
            "name = 'x'\nnodes = 5\nduration_ms = 5000\n[[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [5]\n",
        )
        .unwrap()
    }

    #[test]
    fn two_axes_expand_to_every_combination_first_axis_slowest() {
        let g = grid(&axes(&params(&["token=200,500", "consensus=300,600,900"])).unwrap());
        let labels: Vec<String> = g.iter().map(|p| label(p)).collect();
        assert_eq!(
            labels,
            [
                "token=200,consensus=300",
                "token=200,consensus=600",
                "token=200,consensus=900",
                "token=500,consensus=300",
                "token=500,consensus=600",
                "token=500,consensus=900",
            ]
        );
        assert_eq!(grid(&[]), vec![Vec::<(String, String)>::new()]);
    }

    #[test]
    fn bad_params_are_refused() {
        let e = axes(&params(&["a=1", "b=2", "c=3"])).unwrap_err();
        assert_eq!(e.to_string(), "at most two --param");
        let e = axes(&params(&["token"])).unwrap_err();
        assert_eq!(e.to_string(), "--param token: expected knob=v1,v2,...");
    }

    #[test]
    fn configurations_set_each_knob_and_are_checked() {
        let c = configurations(&base(), &params(&["token=500,1000", "nodes=5,6"])).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].label, "token=500,nodes=6");
        assert_eq!(c[1].experiment.totem.token, 500);
        assert_eq!(c[1].experiment.nodes, 6);
        assert_eq!(c[2].experiment.totem.token, 1000);
        assert_eq!(c[2].experiment.nodes, 5);
        // The schedule names node 5: a 4-node configuration fails before anything runs.
        let e = configurations(&base(), &params(&["nodes=5,4"])).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "nodes=4: faults[0] names node 5; nodes are 1..=4"
        );
        let e = configurations(&base(), &params(&["token=x"])).unwrap_err();
        // A knob with a value it cannot take is named as such, not as "no knob".
        assert!(
            format!("{e:#}").starts_with("token=x: 'x' is not a value 'token' can take"),
            "{e:#}"
        );
        let e = configurations(&base(), &params(&["tokn=1"])).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("tokn=1: 'tokn' is not a knob"),
            "{e:#}"
        );
    }

    #[test]
    fn the_consensus_sweep_runs_every_consensus_at_0_5_and_10_percent_loss() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let base = Experiment::load(&dir.join("consensus-sweep.toml")).unwrap();
        let c = configurations(
            &base,
            &params(&["consensus=1200,600,300,150,100", "loss_pct=0,5,10"]),
        )
        .unwrap();
        assert_eq!(c.len(), 15);
        assert_eq!(c[1].label, "consensus=1200,loss_pct=5");
        assert!(c.iter().all(|c| c.experiment.reps == 10));
        assert_eq!(
            c.iter()
                .map(|c| c.experiment.loss_pct)
                .take(3)
                .collect::<Vec<_>>(),
            [0, 5, 10]
        );
    }

    #[test]
    fn a_store_sweep_sets_the_services_keys_and_the_store_size() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let base = Experiment::load(&dir.join("store-restart-empty.toml")).unwrap();
        let c = configurations(
            &base,
            &params(&[
                "service_config.store.chunk_bytes=65536,3145728",
                "service_config.store.path=unicast,ring",
            ]),
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[3].label,
            "service_config.store.chunk_bytes=3145728,service_config.store.path=ring"
        );
        let section = &c[3].experiment.service_config["store"];
        assert_eq!(section["chunk_bytes"].as_integer(), Some(3 << 20));
        assert_eq!(section["path"].as_str(), Some("ring"));
        let c = configurations(
            &base,
            &params(&[
                "service_config.store.design=push,pull",
                "store.bytes=104857600",
            ]),
        )
        .unwrap();
        assert_eq!(
            c[0].experiment.service_config["store"]["design"].as_str(),
            Some("push")
        );
        assert_eq!(
            c[1].experiment.store.as_ref().map(|s| s.bytes),
            Some(100 << 20)
        );
        let e = configurations(&base, &params(&["service_config.store.path=tcp"])).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("service_config.store.path=tcp: "),
            "{e:#}"
        );
    }
}
