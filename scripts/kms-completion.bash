# Bash completion for kms (the kmsd project's KMS command line).
# Install: copy to /usr/share/bash-completion/completions/kms (cmake --install
# does), or `source` it from ~/.bashrc.  kms itself works out the candidates
# from the AWS model: commands, options, enum values.
_kms_complete() {
  local IFS=$'\n'
  COMPREPLY=($(COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" "${COMP_WORDS[0]}" --cli-complete 2>/dev/null))
}
complete -o default -F _kms_complete kms
