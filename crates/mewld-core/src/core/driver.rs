//! The one way the core is driven, in production and in the tests alike:
//! a step's commands are carried out in order, and the inputs they give
//! back at once (a spawn's outcome) are fed in oldest first.

use std::collections::VecDeque;

use super::{Command, Core, Input, Now};

/// What drives a core: where it is, what time it is, and who carries out
/// its commands.
pub trait Driver {
    fn core(&mut self) -> &mut Core;
    fn now(&mut self) -> Now;
    /// Carries out `command`; `Some` input if it has an outcome at once.
    fn execute(&mut self, command: Command) -> Option<Input>;
}

/// Steps the core with `input`, then with each input its commands give
/// back, in the order they came.
pub fn drive(driver: &mut impl Driver, input: Input) {
    let mut inputs = VecDeque::from([input]);
    while let Some(input) = inputs.pop_front() {
        let now = driver.now();
        for command in driver.core().step(now, input) {
            if let Some(next) = driver.execute(command) {
                inputs.push_back(next);
            }
        }
    }
}
