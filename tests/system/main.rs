//! Whole-system scenarios: one binary, one module per user scenario (see ../src for helpers).

mod accuracy;
mod agent_outbox;
mod agent_publish;
mod agent_selfcheck;
mod aggregator_bad_input;
mod aggregator_crash;
mod aggregator_ingest;
mod api_live;
mod broker_tls;
mod calibration_lab;
mod demo;
mod deploy_files;
mod deploy_mosquitto;
mod deploy_topology;
mod faults;
mod flood;
mod forecast;
mod hostile_salt;
mod hostile_sensor;
mod replicas;
mod sensor_offline;
