//! `ctl epoch show` and `ctl epoch advance` (which asks before it fences anything).

use std::io::{BufRead, Write};

use super::{Ctl, CtlError, print, render};
use crate::proto;

impl Ctl {
    pub(super) async fn epoch_show(
        &mut self,
        out: &mut impl Write,
        namespace: String,
    ) -> Result<(), CtlError> {
        let req = proto::GetNamespaceRequest { name: namespace };
        let n = self.admin.get_namespace(req).await?.into_inner().namespace;
        let n = n.unwrap_or_default();
        let table = render::namespaces_table(std::slice::from_ref(&n));
        Ok(print(out, self.output, table, render::namespace_json(&n))?)
    }

    pub(super) async fn epoch_advance(
        &mut self,
        out: &mut impl Write,
        input: &mut impl BufRead,
        namespace: String,
        yes: bool,
    ) -> Result<(), CtlError> {
        if !yes {
            confirm_advance(out, input, &namespace)?;
        }
        let req = proto::AdvanceEpochRequest { namespace };
        let r = self.admin.advance_epoch(req).await?.into_inner();
        let n = r.namespace.unwrap_or_default();
        let table = format!(
            "{}fenced {} instance(s)\n",
            render::namespaces_table(std::slice::from_ref(&n)),
            r.fenced_instances
        );
        let mut json = render::namespace_json(&n);
        json["fenced_instances"] = r.fenced_instances.into();
        Ok(print(out, self.output, table, json)?)
    }
}

/// Asks before an epoch advance; anything but yes refuses.
fn confirm_advance(
    out: &mut impl Write,
    input: &mut impl BufRead,
    namespace: &str,
) -> Result<(), CtlError> {
    write!(
        out,
        "Advance the epoch of namespace {namespace:?}? Every instance of older \
         epochs becomes DEAD. [y/N] "
    )?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(CtlError::Refused(
            "not confirmed; nothing changed (pass --yes to skip the question)".into(),
        ));
    }
    Ok(())
}
