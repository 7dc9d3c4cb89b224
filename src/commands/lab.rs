//! `statescope lab [NAME]`: list the exercises of [`crate::lab`], or run one and print its
//! `lab` record.

use crate::config::{Format, LabConfig};
use crate::lab::{LabCtx, LabOut, LABS};
use crate::record::Record;
use std::process::ExitCode;

/// `statescope lab [NAME]`.
pub fn run(args: &LabConfig) -> anyhow::Result<ExitCode> {
    let Some(name) = &args.name else {
        println!("Lab exercises (statescope lab NAME):");
        for lab in LABS {
            println!("  {:<24} {}", lab.name, lab.summary);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(lab) = LABS.iter().find(|l| l.name == name) else {
        let names: Vec<_> = LABS.iter().map(|l| l.name).collect();
        anyhow::bail!("no lab named {name:?}; the labs are: {}", names.join(", "));
    };
    let ctx = LabCtx {
        format: args.format,
        redis: args.redis.clone(),
        out_dir: args.out_dir.clone(),
        html: args.html.clone(),
        exe: std::env::current_exe()?,
        variant: args.variant.clone(),
    };
    std::fs::create_dir_all(&ctx.out_dir)?;
    let mut out = LabOut::new(args.format, Box::new(std::io::stdout()));
    let rec = (lab.run)(&ctx, &mut out)?;
    if let Some(h) = &args.html {
        if !h.exists() {
            // The scaling labs measure messages between processes, not packets: say so rather
            // than leave the user looking for a file.
            eprintln!(
                "statescope: lab {name} captures no packets, so there is no report to write to {}",
                h.display()
            );
        }
    }
    let ok = rec.ok;
    if args.format == Format::Table {
        out.say("")?;
        out.say(&format!("Question: {}", rec.question))?;
        out.say(&format!("Answer:   {}", rec.answer))?;
        out.say(&format!(
            "Checks:   {}",
            if ok { "all held" } else { "SOME FAILED" }
        ))?;
    }
    out.record(&Record::Lab(rec))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
