use crate::helpers::spawn;
