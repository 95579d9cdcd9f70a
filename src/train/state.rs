//! The per-epoch training state of a run folder: `train-state.json` (config, next epoch, history)
//! and `train-state.safetensors` (weights, BN statistics, momentum), written atomically after every
//! epoch and read back to resume.
use std::collections::HashMap;

use super::{EpochMetrics, RunFiles, Sgd, TrainConfig};
use crate::error::{Error, Result};
use crate::model::{from_raw, Model};
use crate::util::write_json;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StateJson {
    next_epoch: usize,
    config: TrainConfig,
    history: Vec<EpochMetrics>,
}

pub(super) fn save_state(
    run: &RunFiles,
    model: &Model,
    opt: &Sgd,
    cfg: &TrainConfig,
    next_epoch: usize,
    history: &[EpochMetrics],
) -> Result<()> {
    let mut tensors: Vec<(String, torchfile::RawTensor)> =
        model.state_dict(0).into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    tensors.extend(opt.buffers().into_iter().map(|(n, b)| (format!("momentum.{n}"), crate::model::to_raw(&b))));
    // Two files cannot be renamed at once, so the JSON (config and history up to `next_epoch`) is
    // written first and the tensors, labelled with their epoch, last: after a kill between the two the
    // JSON is one epoch ahead and [`load_state`] keeps the tensors' epoch and that much history. (With
    // the JSON written last and the tensors unlabelled, a kill between the writes left epoch e+1's
    // tensors under an epoch-e record, and the resumed run trained that epoch twice: caught by the
    // IMP SIGKILL test.)
    write_json(&run.state_json(), &StateJson { next_epoch, config: cfg.clone(), history: history.to_vec() })?;
    let meta = std::collections::BTreeMap::from([(EPOCH_KEY.to_string(), next_epoch.to_string())]);
    torchfile::save_safetensors(&run.state(), &tensors, &meta)?;
    Ok(())
}

/// Metadata key of `train-state.safetensors`: the `next_epoch` its tensors belong to.
const EPOCH_KEY: &str = "quarantine.next_epoch";

pub(super) fn load_state(
    run: &RunFiles,
    model: &Model,
    opt: &mut Sgd,
    cfg: &TrainConfig,
) -> Result<(usize, Vec<EpochMetrics>)> {
    let path = run.state_json();
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let st: StateJson =
        serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&path, format!("corrupt training state: {e}")))?;
    if st.config != *cfg {
        return Err(Error::bad_file(&path, "was written with a different training configuration; a resumed run needs the same options (or a new output folder)"));
    }
    let sd = torchfile::load(&run.state())?;
    let next_epoch = match sd.metadata.get(EPOCH_KEY) {
        Some(e) => {
            e.parse::<usize>().map_err(|_| Error::bad_file(run.state(), format!("corrupt {EPOCH_KEY} `{e}`")))?
        }
        None => st.next_epoch,
    };
    if next_epoch > st.next_epoch {
        return Err(Error::bad_file(
            &path,
            format!("records epoch {} but {} holds the later epoch {next_epoch}", st.next_epoch, run.state().display()),
        ));
    }
    let mut history = st.history;
    history.retain(|h| h.epoch <= next_epoch);
    let mut model_sd = vec![];
    let mut bufs = HashMap::new();
    for (name, raw) in sd.tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model_sd.push((n.to_string(), raw));
        } else if let Some(n) = name.strip_prefix("momentum.") {
            bufs.insert(n.to_string(), from_raw(&raw, &run.state(), &name)?);
        }
    }
    model.load_state_dict(&model_sd, &run.state())?;
    opt.load_buffers(bufs);
    Ok((next_epoch, history))
}
